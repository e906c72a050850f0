"""MNIST-1D, generated locally with the ``mnist1d`` package (never downloaded).

Greydanus & Kobak, "Scaling Down Deep Learning with MNIST-1D", ICML 2024.
``make_dataset`` takes a few seconds for the default 5,000 samples, so generated
arrays are cached in-process (per seed and size) and on disk as ``.npz`` under
``$ZOOSCOPE_CACHE`` (default ``~/.cache/zooscope``; set it to ``off`` to disable).
The package's own 80/20 train/test split is kept, so ``spec.test_size`` is not used.
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
import warnings
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np

from engine.config import DatasetSpec
from engine.data.dataset import SourceData, check_option

__all__ = ["cache_dir", "generate_mnist1d", "mnist1d"]

_FORMAT = 1  # bump when the cached arrays change meaning
_GLOBAL_RNG_LOCK = threading.Lock()


def mnist1d(spec: DatasetSpec, *, n_samples: int = 5000) -> SourceData:
    """MNIST-1D: 10 classes of 1-D signals, shape ``(1, 40)``; ``n_samples`` in total (80% train)."""
    check_option(100 <= n_samples <= 200_000, "mnist1d", "n_samples", n_samples, "between 100 and 200000")
    x, y, x_test, y_test = generate_mnist1d(spec.seed, n_samples)
    return SourceData(
        x=x[:, None, :],  # (N, 1, 40)
        y=y,
        x_test=x_test[:, None, :],
        y_test=y_test,
        task="classification",
        feature_names=[f"t{i}" for i in range(x.shape[1])],
        class_names=[str(c) for c in range(10)],
    )


def cache_dir() -> Path | None:
    """Where generated arrays are cached on disk, or ``None`` when disk caching is off."""
    raw = os.environ.get("ZOOSCOPE_CACHE")
    if raw is None:
        return Path.home() / ".cache" / "zooscope"
    if raw.strip().lower() in ("", "0", "off", "none", "false"):
        return None
    return Path(raw).expanduser()


@lru_cache(maxsize=16)
def generate_mnist1d(seed: int, n_samples: int) -> tuple[np.ndarray, ...]:
    """``(x, y, x_test, y_test)`` for a seed and size, read-only; from disk when cached there."""
    path = _cache_path(seed, n_samples)
    arrays = _read_cache(path) if path is not None else None
    if arrays is None:
        arrays = _make(seed, n_samples)
        if path is not None:
            _write_cache(path, arrays)
    for a in arrays:
        a.setflags(write=False)  # shared by every caller: nobody may modify it
    return arrays


def _make(seed: int, n_samples: int) -> tuple[np.ndarray, ...]:
    from mnist1d.data import get_dataset_args, make_dataset  # slow import (matplotlib)

    args = get_dataset_args()
    args.seed = seed
    args.num_samples = n_samples
    with _isolated_global_rng():  # make_dataset seeds and draws from the global RNGs
        data = make_dataset(args)
    return (
        np.asarray(data["x"], dtype=np.float32),
        np.asarray(data["y"], dtype=np.int64),
        np.asarray(data["x_test"], dtype=np.float32),
        np.asarray(data["y_test"], dtype=np.int64),
    )


@contextmanager
def _isolated_global_rng():
    """Restore NumPy's and Python's global RNG state afterwards: library code never seeds globally."""
    with _GLOBAL_RNG_LOCK:
        np_state, py_state = np.random.get_state(), random.getstate()
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def _cache_path(seed: int, n_samples: int) -> Path | None:
    root = cache_dir()
    if root is None:
        return None
    try:
        from importlib.metadata import version

        pkg = version("mnist1d")
    except Exception:  # noqa: BLE001 - an unknown version only makes the key less specific
        pkg = "unknown"
    return root / f"mnist1d-v{_FORMAT}-pkg{pkg}-seed{seed}-n{n_samples}.npz"


def _read_cache(path: Path) -> tuple[np.ndarray, ...] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            return tuple(np.array(f[k]) for k in ("x", "y", "x_test", "y_test"))
    except Exception as exc:  # noqa: BLE001 - a bad cache file is regenerated, not fatal
        warnings.warn(f"ignoring unreadable MNIST-1D cache {path} ({exc}); regenerating", stacklevel=3)
        return None


def _write_cache(path: Path, arrays: tuple[np.ndarray, ...]) -> None:
    """Write atomically (temporary file + rename); a failure only warns."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **dict(zip(("x", "y", "x_test", "y_test"), arrays)))
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError as exc:
        warnings.warn(
            f"could not cache MNIST-1D in {path.parent} ({exc}); set ZOOSCOPE_CACHE to a writable folder",
            stacklevel=3,
        )
