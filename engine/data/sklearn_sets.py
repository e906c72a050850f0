"""scikit-learn's bundled datasets: digits, breast cancer, wine, iris (no network).

``digits`` keeps its image shape ``(1, 8, 8)`` with pixels scaled to [0, 1]; the
three tables are standardised with the statistics of the training split.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from engine.config import DatasetSpec
from engine.data.dataset import SourceData

__all__ = ["breast_cancer", "digits", "iris", "wine"]


@cache
def _bunch(which: str):
    from sklearn import datasets  # imported on first use: it is slow, and most callers never need it

    return getattr(datasets, f"load_{which}")()


def _table(which: str) -> SourceData:
    bunch = _bunch(which)
    return SourceData(
        x=np.asarray(bunch.data, dtype=np.float64),  # (N, D)
        y=np.asarray(bunch.target, dtype=np.int64),
        task="classification",
        feature_names=[str(f) for f in bunch.feature_names],
        class_names=[str(c) for c in bunch.target_names],
        standardize=True,
    )


def digits(spec: DatasetSpec) -> SourceData:
    """8×8 handwritten digits (1,797 samples, 10 classes), shape ``(1, 8, 8)`` in [0, 1]."""
    bunch = _bunch("digits")
    return SourceData(
        x=(np.asarray(bunch.data, dtype=np.float32) / 16.0).reshape(-1, 1, 8, 8),  # (N, 1, 8, 8)
        y=np.asarray(bunch.target, dtype=np.int64),
        task="classification",
        feature_names=[f"pixel_{r}_{c}" for r in range(8) for c in range(8)],
        class_names=[str(c) for c in bunch.target_names],
    )


def breast_cancer(spec: DatasetSpec) -> SourceData:
    """Wisconsin diagnostic breast cancer (569 samples, 30 features, malignant/benign)."""
    return _table("breast_cancer")


def wine(spec: DatasetSpec) -> SourceData:
    """Wine recognition (178 samples, 13 features, 3 cultivars)."""
    return _table("wine")


def iris(spec: DatasetSpec) -> SourceData:
    """Fisher's iris (150 samples, 4 features, 3 species)."""
    return _table("iris")
