"""Predictive multiplicity: how much the good models disagree on individual samples.

References
----------
.. [1] C. Marx, F. Calmon, B. Ustun, "Predictive Multiplicity in Classification",
   ICML, 2020 (ambiguity, discrepancy).
.. [2] H. Hsu, F. Calmon, "Rashomon Capacity: A Metric for Predictive Multiplicity in
   Classification", NeurIPS, 2022 (per-sample spread of predicted probabilities).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from engine.probes.rashomon.importance import stacked_forward
from engine.probes.rashomon.sets import Mode, as_losses, check_mode, rashomon_threshold

__all__ = [
    "PredictiveMultiplicity",
    "MultiplicityCurve",
    "predictive_multiplicity",
    "multiplicity_curve",
    "most_contested",
    "member_probabilities",
]


@dataclass(frozen=True)
class PredictiveMultiplicity:
    """Disagreement of M models with a reference model on N samples.

    Attributes
    ----------
    ambiguity : float
        Share of samples whose prediction at least one member flips (Marx et al. 2020).
    discrepancy : float
        Largest share of samples any single member flips.
    flip_rate : np.ndarray
        Share of samples each member flips, shape (M,).
    flipped : np.ndarray
        Per sample, True if some member flips it, shape (N,).
    class_shares : np.ndarray
        Share of members predicting each class, shape (N, C).
    disagreement : np.ndarray
        1 − the largest class share per sample, shape (N,); 0 when all agree.
    probability_range : np.ndarray or None
        Per sample, the largest (over classes) max − min predicted probability across
        members, shape (N,); None when only hard predictions were given.
    reference : np.ndarray
        The reference predictions, shape (N,).
    """

    ambiguity: float
    discrepancy: float
    flip_rate: np.ndarray
    flipped: np.ndarray
    class_shares: np.ndarray
    disagreement: np.ndarray
    probability_range: np.ndarray | None
    reference: np.ndarray


@dataclass(frozen=True)
class MultiplicityCurve:
    """Ambiguity, discrepancy and set size as ε grows (both non-decreasing)."""

    epsilons: np.ndarray
    thresholds: np.ndarray
    sizes: np.ndarray
    ambiguity: np.ndarray
    discrepancy: np.ndarray
    reference_index: int
    mode: str


def _to_numpy(a) -> np.ndarray:
    return np.asarray(a.detach().cpu() if hasattr(a, "detach") else a)


def _split_predictions(predictions, n_classes: int | None):
    """Return hard labels (M, N), probabilities (M, N, C) or None, and C."""
    p = _to_numpy(predictions)
    if p.ndim == 3:
        probs = p.astype(np.float64)
        return probs.argmax(-1), probs, probs.shape[-1]
    if p.ndim != 2:
        raise ValueError("predictions must be labels of shape (M, N) or probabilities of "
                         f"shape (M, N, C); got shape {p.shape}")
    labels = p.astype(np.int64)
    c = int(labels.max()) + 1 if n_classes is None else n_classes
    return labels, None, c


def predictive_multiplicity(predictions, reference, *, n_classes: int | None = None
                            ) -> PredictiveMultiplicity:
    """Ambiguity, discrepancy and per-sample disagreement of a set of models.

    Parameters
    ----------
    predictions : array-like of shape (M, N) or (M, N, C)
        Hard labels of each member, or their class probabilities (labels are then
        the argmax).
    reference : array-like of shape (N,)
        The reference model's labels (usually the best model's).
    n_classes : int, optional
        Number of classes for hard labels (default: largest label + 1).

    Returns
    -------
    PredictiveMultiplicity

    References
    ----------
    Marx, Calmon & Ustun 2020, Definitions 3 and 4.
    """
    labels, probs, c = _split_predictions(predictions, n_classes)
    ref = _to_numpy(reference).astype(np.int64).reshape(-1)
    m, n = labels.shape
    if ref.shape[0] != n:
        raise ValueError(f"reference has {ref.shape[0]} samples but predictions have {n}")
    if m == 0:
        raise ValueError("predictive_multiplicity needs at least one model; got 0")
    flips = labels != ref[None, :]  # (M, N)
    flip_rate = flips.mean(axis=1)
    flipped = flips.any(axis=0)
    shares = np.stack([(labels == k).mean(axis=0) for k in range(c)], axis=1)  # (N, C)
    prange = None
    if probs is not None:
        prange = (probs.max(axis=0) - probs.min(axis=0)).max(axis=-1)  # (N,)
    return PredictiveMultiplicity(
        ambiguity=float(flipped.mean()), discrepancy=float(flip_rate.max()),
        flip_rate=flip_rate, flipped=flipped, class_shares=shares,
        disagreement=1.0 - shares.max(axis=1), probability_range=prange, reference=ref)


def multiplicity_curve(losses, predictions, epsilons, *, mode: Mode = "relative",
                       reference_index: int | None = None) -> MultiplicityCurve:
    """Ambiguity and discrepancy of the Rashomon set for many ε at once.

    Members are sorted by loss once; the set at any ε is a prefix of that order, so
    running "any flip" and running maximum of flip rates give every ε in one pass.

    Parameters
    ----------
    losses : array-like of shape (M,)
    predictions : array-like of shape (M, N) (labels) or (M, N, C) (probabilities)
    epsilons : array-like of shape (E,)
    mode : {"relative", "absolute"}
    reference_index : int, optional
        Model used as reference (default: the one with the smallest loss, as in
        Marx et al.); the threshold is always built from the smallest loss.
    """
    check_mode(mode)
    arr = as_losses(losses)
    labels, _, _ = _split_predictions(predictions, None)
    if labels.shape[0] != arr.size:
        raise ValueError(f"predictions have {labels.shape[0]} models but losses {arr.size}")
    ref_i = int(arr.argmin()) if reference_index is None else int(reference_index)
    order = np.argsort(arr, kind="stable")
    flips = labels[order] != labels[ref_i][None, :]  # (M, N), best model first
    any_flip = np.logical_or.accumulate(flips, axis=0).mean(axis=1)  # (M,)
    max_rate = np.maximum.accumulate(flips.mean(axis=1))
    eps = np.asarray(epsilons, dtype=np.float64).reshape(-1)
    best = float(arr.min())
    thr = np.array([rashomon_threshold(best, float(e), mode) for e in eps])
    sizes = np.searchsorted(arr[order], thr, side="right")
    last = np.maximum(sizes - 1, 0)
    return MultiplicityCurve(epsilons=eps, thresholds=thr, sizes=sizes,
                             ambiguity=any_flip[last], discrepancy=max_rate[last],
                             reference_index=ref_i, mode=mode)


def most_contested(result: PredictiveMultiplicity, k: int = 10) -> np.ndarray:
    """Indices of the k samples the members disagree on most.

    Sorted by disagreement, then by probability range (when known), largest first.
    """
    keys = [result.disagreement]
    if result.probability_range is not None:
        keys.insert(0, result.probability_range)  # lexsort: last key is primary
    order = np.lexsort(tuple(-k_ for k_ in keys))
    return order[: max(int(k), 0)]


def member_probabilities(model: nn.Module, stacked_params: Mapping[str, Tensor], x: Tensor,
                         *, chunk: int = 4096) -> np.ndarray:
    """Class probabilities of every member on x, shape (M, N, C), ready for
    :func:`predictive_multiplicity` (softmax of the logits; members run under ``vmap``).
    """
    with torch.no_grad():
        parts = [torch.softmax(stacked_forward(model, stacked_params, x[s:s + chunk]).double(), -1)
                 for s in range(0, x.shape[0], chunk)]
    return torch.cat(parts, dim=1).cpu().numpy()
