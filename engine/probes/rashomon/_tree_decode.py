"""Decode ``treefarms``' model-set DAG into padded per-tree node tables.

Each storage entry of the ``treefarms`` result is a set of subtrees: optionally a
single leaf (``terminal``), then for every split feature a list of (true-set,
false-set) pairs whose cross products are trees rooted at that split. Decoding is
memoized per entry and vectorized over the cross products; the tree order is the one
``treefarms.model.model_set.ModelSetContainer`` uses.
"""

from __future__ import annotations

import ctypes
import os
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

__all__ = ["decode_model_set", "silenced_stdout"]


@contextmanager
def silenced_stdout():
    """Send file descriptor 1 to /dev/null (libgosdt prints its optimal tree there)."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    try:
        yield
    finally:
        try:
            ctypes.CDLL(None).fflush(None)  # flush C stdio before restoring the descriptor
        except (OSError, AttributeError):
            pass
        os.dup2(saved, 1)
        os.close(saved)


@dataclass
class _Batch:
    feature: np.ndarray  # (c, K) split feature, -1 for leaves / padding
    tchild: np.ndarray  # (c, K)
    fchild: np.ndarray  # (c, K)
    pred: np.ndarray  # (c, K) class at leaves, -1 elsewhere
    leaves: np.ndarray  # (c,)
    depth: np.ndarray  # (c,)
    used: np.ndarray  # (c, F) bool
    rows: np.ndarray | None = None  # (c, U) predictions on the distinct data rows, when asked

    @property
    def width(self) -> int:
        return self.feature.shape[1]


def _leaf(prediction: int, n_features: int, rows: np.ndarray | None) -> _Batch:
    z = np.zeros((1, 1), dtype=np.int16)
    on_rows = None if rows is None else np.full((1, rows.shape[0]), prediction, np.int8)
    return _Batch(feature=np.full((1, 1), -1, np.int16), tchild=z, fchild=z.copy(),
                  pred=np.full((1, 1), prediction, np.int16), leaves=np.ones(1, np.int64),
                  depth=np.zeros(1, np.int64), used=np.zeros((1, n_features), bool), rows=on_rows)


def _pad(b: _Batch, width: int) -> _Batch:
    extra = width - b.width
    if extra == 0:
        return b

    def pad(a, value):
        return np.pad(a, ((0, 0), (0, extra)), constant_values=value)

    return _Batch(feature=pad(b.feature, -1), tchild=pad(b.tchild, 0), fchild=pad(b.fchild, 0), pred=pad(b.pred, -1),
                  leaves=b.leaves, depth=b.depth, used=b.used, rows=b.rows)


def _join(feature: int, a: _Batch, b: _Batch, rows: np.ndarray | None) -> _Batch:
    """All trees with root split ``feature``, true subtree from a, false subtree from b."""
    ia = np.repeat(np.arange(a.feature.shape[0]), b.feature.shape[0])
    ib = np.tile(np.arange(b.feature.shape[0]), a.feature.shape[0])
    c = ia.size
    off_b = 1 + a.width

    def shift(child, feat, off):
        return np.where(feat >= 0, child + off, 0).astype(np.int16)

    root = lambda v: np.full((c, 1), v, np.int16)  # noqa: E731
    feat = np.concatenate([root(feature), a.feature[ia], b.feature[ib]], axis=1)
    tch = np.concatenate([root(1), shift(a.tchild, a.feature, 1)[ia],
                          shift(b.tchild, b.feature, off_b)[ib]], axis=1)
    fch = np.concatenate([root(off_b), shift(a.fchild, a.feature, 1)[ia],
                          shift(b.fchild, b.feature, off_b)[ib]], axis=1)
    pred = np.concatenate([root(-1), a.pred[ia], b.pred[ib]], axis=1)
    used = a.used[ia] | b.used[ib]
    used[:, feature] = True
    on_rows = None
    if rows is not None:  # a subtree predicts the same on a row wherever it hangs: one where per tree
        on_rows = np.where(rows[None, :, feature] == 1, a.rows[ia], b.rows[ib])  # (c, U)
    return _Batch(feature=feat, tchild=tch, fchild=fch, pred=pred, leaves=a.leaves[ia] + b.leaves[ib],
                  depth=1 + np.maximum(a.depth[ia], b.depth[ib]), used=used, rows=on_rows)


def _concat(parts: list[_Batch]) -> _Batch:
    width = max(p.width for p in parts)
    parts = [_pad(p, width) for p in parts]
    fields = [np.concatenate([getattr(p, name) for p in parts], axis=0)
              for name in ("feature", "tchild", "fchild", "pred", "leaves", "depth", "used")]
    rows = None if parts[0].rows is None else np.concatenate([p.rows for p in parts], axis=0)
    return _Batch(*fields, rows)


def decode_model_set(raw: dict, kept_cols: np.ndarray, n_features: int, rows: np.ndarray | None = None):
    """Decode every tree of a ``treefarms`` result.

    Parameters
    ----------
    raw : dict
        The parsed JSON returned by ``libgosdt.fit`` in Rashomon mode.
    kept_cols : np.ndarray
        Original column index of each column that was given to ``treefarms``.
    n_features : int
        Number of original columns.
    rows : np.ndarray, optional
        Distinct 0/1 data rows (U, F); when given, every tree's predictions on them are
        built along the DAG (one ``where`` per tree instead of routing every row).

    Returns
    -------
    tuple
        feature, true_child, false_child, prediction (T, K); leaves, depth (T,);
        features_used (T, F); reported metrics (T, 3) as [objective, misclassified
        count, leaves]; predictions on ``rows`` (T, U) or None.
    """
    storage = raw["storage"]
    memo: dict[int, _Batch] = {}
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))

    def decode(i: int) -> _Batch:
        if i in memo:
            return memo[i]
        entry = storage[i]
        parts = [_leaf(int(entry["prediction"]), n_features, rows)] if entry["terminal"] else []
        for split, pairs in entry["mapping"].items():
            col = int(kept_cols[int(split)])
            parts.extend(_join(col, decode(t), decode(f), rows) for t, f in pairs)
        batch = _concat(parts)
        assert batch.feature.shape[0] == entry["count"], "treefarms count does not match its trees"
        memo[i] = batch
        return batch

    metrics = raw["available_metric_values"]
    batches, reported = [], []
    for pointer, value in zip(metrics["metric_pointers"], metrics["metric_values"]):
        b = decode(pointer)
        batches.append(b)
        reported.append(np.tile(np.asarray(value, dtype=np.float64), (b.feature.shape[0], 1)))
    out = _concat(batches)
    return (out.feature, out.tchild, out.fchild, out.pred, out.leaves, out.depth, out.used,
            np.concatenate(reported, axis=0), out.rows)
