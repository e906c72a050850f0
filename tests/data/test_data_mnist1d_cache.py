"""MNIST-1D generation is cached in-process and on disk, atomically."""

import numpy as np
import pytest

from engine.config import DatasetSpec
from engine.data import load, mnist_1d


def test_disk_cache_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOOSCOPE_CACHE", str(tmp_path))
    first = mnist_1d.generate_mnist1d.__wrapped__(11, 100)
    files = list(tmp_path.glob("mnist1d-*seed11-n100.npz"))
    assert len(files) == 1 and not list(tmp_path.glob("*.tmp"))

    def fail(*args):
        raise AssertionError("should have been read from disk")

    monkeypatch.setattr(mnist_1d, "_make", fail)
    again = mnist_1d.generate_mnist1d.__wrapped__(11, 100)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_cache_off(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOOSCOPE_CACHE", "off")
    assert mnist_1d.cache_dir() is None
    monkeypatch.setenv("ZOOSCOPE_CACHE", str(tmp_path / "c"))
    assert mnist_1d.cache_dir() == tmp_path / "c"


def test_corrupt_cache_file_is_regenerated(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOOSCOPE_CACHE", str(tmp_path))
    path = mnist_1d._cache_path(12, 100)
    path.write_bytes(b"not an npz")
    with pytest.warns(UserWarning, match="unreadable MNIST-1D cache"):
        x, *_ = mnist_1d.generate_mnist1d.__wrapped__(12, 100)
    assert x.shape == (80, 40)


def test_in_process_cache_returns_read_only_arrays():
    a = mnist_1d.generate_mnist1d(0, 100)
    assert a is mnist_1d.generate_mnist1d(0, 100)
    assert not a[0].flags.writeable
    ds = load(DatasetSpec(name="mnist1d", options={"n_samples": 100}))
    ds.x_train.zero_()  # the tensors are copies: the cache stays intact
    assert np.abs(mnist_1d.generate_mnist1d(0, 100)[0]).sum() > 0
