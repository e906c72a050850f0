"""Rashomon sets: membership, size as ε grows, and the Rashomon ratios.

The Rashomon set of a model class for a loss L is the set of models whose loss is
within ε of the best one. The papers use two conventions and every result here
says which one it used (``mode``):

- ``"relative"``: L(f) ≤ (1 + ε) · L* (TreeFARMS, feature interaction score clouds,
  variable importance clouds);
- ``"absolute"``: L(f) ≤ L* + ε (Semenova et al. 2022, Marx et al. 2020).

References
----------
.. [1] L. Breiman, "Statistical Modeling: The Two Cultures", Statistical Science, 2001.
.. [2] L. Semenova, C. Rudin, R. Parr, "On the Existence of Simpler Machine Learning
   Models", ACM FAccT, 2022.
.. [3] C. Marx, F. Calmon, B. Ustun, "Predictive Multiplicity in Classification",
   ICML, 2020.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

__all__ = [
    "RashomonSet",
    "RashomonCurve",
    "RashomonRatio",
    "rashomon_threshold",
    "rashomon_set",
    "rashomon_curve",
    "rashomon_ratio_from_losses",
    "pattern_rashomon_ratio",
    "ridge_rashomon_ratio",
]

Mode = Literal["relative", "absolute"]
_MODES = ("relative", "absolute")


@dataclass(frozen=True)
class RashomonSet:
    """Members of a population within ε of the reference loss.

    Attributes
    ----------
    members : np.ndarray
        Boolean mask of shape (M,), True for models in the set.
    indices : np.ndarray
        Indices of the members, sorted by loss (best first), shape (K,).
    threshold : float
        The largest loss a member may have.
    reference_loss : float
        L*, the loss the threshold is built from.
    epsilon : float
        The ε used.
    mode : str
        ``"relative"`` (L ≤ (1+ε)·L*) or ``"absolute"`` (L ≤ L* + ε).
    size : int
        Number of members.
    fraction : float
        size / M.
    """

    members: np.ndarray
    indices: np.ndarray
    threshold: float
    reference_loss: float
    epsilon: float
    mode: str
    size: int
    fraction: float

    @property
    def label(self) -> str:
        """A human-readable statement of the membership condition."""
        return _condition_label(self.epsilon, self.mode)


@dataclass(frozen=True)
class RashomonCurve:
    """Size of the Rashomon set as a function of ε (all on one ``mode``).

    Attributes
    ----------
    epsilons, thresholds : np.ndarray
        Shape (E,).
    sizes : np.ndarray
        Number of members at each ε, shape (E,), non-decreasing in ε.
    fractions : np.ndarray
        sizes / M.
    reference_loss : float
    mode : str
    """

    epsilons: np.ndarray
    thresholds: np.ndarray
    sizes: np.ndarray
    fractions: np.ndarray
    reference_loss: float
    mode: str


@dataclass(frozen=True)
class RashomonRatio:
    """A Rashomon ratio estimate with its standard error.

    Attributes
    ----------
    ratio : float
        Estimated volume (or pattern) ratio.
    standard_error : float
        Binomial standard error sqrt(p(1-p)/n) for Monte Carlo estimates, 0 for exact ones.
    n_samples : int
        Number of models sampled (0 for analytic values).
    n_members : int
        Sampled models inside the set.
    threshold : float
    epsilon : float
    mode : str
    kind : str
        ``"monte_carlo"``, ``"analytic"`` or ``"pattern"``.
    """

    ratio: float
    standard_error: float
    n_samples: int
    n_members: int
    threshold: float
    epsilon: float
    mode: str
    kind: str


def _condition_label(epsilon: float, mode: str) -> str:
    if mode == "relative":
        return f"loss ≤ (1 + {epsilon:g}) × best (relative ε)"
    return f"loss ≤ best + {epsilon:g} (absolute ε)"


def check_mode(mode: str) -> None:
    if mode not in _MODES:
        raise ValueError(f"mode must be 'relative' or 'absolute'; got {mode!r}")


def as_losses(losses) -> np.ndarray:
    arr = np.asarray(losses.detach().cpu() if hasattr(losses, "detach") else losses,
                     dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"losses must be a non-empty 1-D array; got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        bad = int(np.sum(~np.isfinite(arr)))
        raise ValueError(f"losses contain {bad} non-finite values (diverged models?); "
                         "drop them before building a Rashomon set")
    return arr


def _reference_loss(arr: np.ndarray, reference) -> float:
    if isinstance(reference, str):
        if reference != "best":
            raise ValueError(f"reference must be 'best' or a loss value; got {reference!r}")
        return float(arr.min())
    return float(reference)


def rashomon_threshold(reference_loss: float, epsilon: float, mode: Mode = "relative") -> float:
    """The largest loss a Rashomon set member may have.

    Parameters
    ----------
    reference_loss : float
        L*, usually the best loss in the class.
    epsilon : float
        Non-negative ε.
    mode : {"relative", "absolute"}
        ``(1 + ε)·L*`` or ``L* + ε``.
    """
    check_mode(mode)
    if not epsilon >= 0:
        raise ValueError(f"epsilon must be >= 0; got {epsilon}")
    if mode == "relative":
        if reference_loss < 0:
            raise ValueError("relative ε needs a non-negative reference loss; got "
                             f"{reference_loss}; use mode='absolute' for signed metrics")
        return reference_loss * (1.0 + epsilon)
    return reference_loss + epsilon


def rashomon_set(losses, *, epsilon: float, mode: Mode = "relative",
                 reference: Literal["best"] | float = "best") -> RashomonSet:
    """Select the models of a population whose loss is within ε of the reference.

    Parameters
    ----------
    losses : array-like of shape (M,)
        One loss per model on a held-out split (lower is better; pass 1 - accuracy
        for an error-rate set).
    epsilon : float
        Tolerance, ≥ 0.
    mode : {"relative", "absolute"}, default "relative"
        ``"relative"``: loss ≤ (1 + ε)·L*; ``"absolute"``: loss ≤ L* + ε.
    reference : "best" or float, default "best"
        L*: the smallest loss in ``losses``, or a given value (e.g. the optimum of
        the model class when the population does not contain it).

    Returns
    -------
    RashomonSet

    References
    ----------
    Semenova, Rudin & Parr 2022 (absolute ε); Xin et al. 2022 (relative ε).
    """
    arr = as_losses(losses)
    ref = _reference_loss(arr, reference)
    thr = rashomon_threshold(ref, epsilon, mode)
    members = arr <= thr
    idx = np.flatnonzero(members)
    idx = idx[np.argsort(arr[idx], kind="stable")]
    return RashomonSet(members=members, indices=idx, threshold=float(thr),
                       reference_loss=ref, epsilon=float(epsilon), mode=mode,
                       size=int(idx.size), fraction=float(idx.size / arr.size))


def rashomon_curve(losses, epsilons, *, mode: Mode = "relative",
                   reference: Literal["best"] | float = "best") -> RashomonCurve:
    """Set size for many ε at once (one sort, then a binary search per ε).

    Parameters
    ----------
    losses : array-like of shape (M,)
    epsilons : array-like of shape (E,)
    mode, reference
        As in :func:`rashomon_set`.
    """
    arr = as_losses(losses)
    ref = _reference_loss(arr, reference)
    eps = np.asarray(epsilons, dtype=np.float64).reshape(-1)
    thr = np.array([rashomon_threshold(ref, float(e), mode) for e in eps])
    sizes = np.searchsorted(np.sort(arr), thr, side="right")
    return RashomonCurve(epsilons=eps, thresholds=thr, sizes=sizes,
                         fractions=sizes / arr.size, reference_loss=ref, mode=mode)


def rashomon_ratio_from_losses(losses, *, epsilon: float, mode: Mode = "absolute",
                               reference_loss: float | None = None) -> RashomonRatio:
    """Monte Carlo Rashomon ratio from losses of models drawn uniformly from a class.

    Parameters
    ----------
    losses : array-like of shape (n,)
        Losses of models sampled uniformly from the (bounded) hypothesis space.
    epsilon : float
    mode : {"relative", "absolute"}, default "absolute"
        Semenova et al. use the absolute convention.
    reference_loss : float, optional
        The class optimum L*; defaults to the smallest sampled loss, which
        over-estimates L* and so under-estimates the ratio — pass the true optimum.

    Returns
    -------
    RashomonRatio
        ``ratio`` = share of samples inside the set, ``standard_error`` its binomial
        standard error.

    References
    ----------
    Semenova, Rudin & Parr 2022, Definition 3 (Rashomon ratio).
    """
    arr = as_losses(losses)
    ref = float(arr.min()) if reference_loss is None else float(reference_loss)
    thr = rashomon_threshold(ref, epsilon, mode)
    k = int(np.sum(arr <= thr))
    n = arr.size
    p = k / n
    return RashomonRatio(ratio=p, standard_error=math.sqrt(p * (1 - p) / n), n_samples=n,
                         n_members=k, threshold=float(thr), epsilon=float(epsilon),
                         mode=mode, kind="monte_carlo")


def pattern_rashomon_ratio(predictions, losses, *, epsilon: float, mode: Mode = "absolute",
                           reference_loss: float | None = None) -> RashomonRatio:
    """Pattern Rashomon ratio: distinct prediction patterns of good models / of all models.

    Parameters
    ----------
    predictions : array-like of shape (M, N)
        Hard predictions of M sampled models on N samples.
    losses : array-like of shape (M,)
    epsilon, mode, reference_loss
        As in :func:`rashomon_ratio_from_losses`.

    Returns
    -------
    RashomonRatio
        ``kind="pattern"``; ``n_members`` counts distinct patterns in the set,
        ``n_samples`` distinct patterns overall; ``standard_error`` is 0 (the
        estimate is a ratio of counts over the sampled models, not a binomial mean).

    References
    ----------
    Semenova, Rudin & Parr 2022, Definition 5 (pattern Rashomon ratio).
    """
    preds = np.asarray(predictions)
    arr = as_losses(losses)
    if preds.ndim != 2 or preds.shape[0] != arr.size:
        raise ValueError(f"predictions must have shape (M, N) with M = len(losses) = {arr.size}; "
                         f"got {preds.shape}")
    ref = float(arr.min()) if reference_loss is None else float(reference_loss)
    thr = rashomon_threshold(ref, epsilon, mode)
    all_patterns = np.unique(preds, axis=0).shape[0]
    good = preds[arr <= thr]
    good_patterns = np.unique(good, axis=0).shape[0] if good.size else 0
    return RashomonRatio(ratio=good_patterns / all_patterns, standard_error=0.0,
                         n_samples=all_patterns, n_members=good_patterns,
                         threshold=float(thr), epsilon=float(epsilon), mode=mode,
                         kind="pattern")


def ridge_rashomon_ratio(x, y, *, alpha: float, epsilon: float, half_width: float,
                         mode: Mode = "absolute") -> RashomonRatio:
    """Analytic Rashomon ratio of ridge regression in a box of parameters.

    The objective L(θ) = mean((Xθ − y)²) + α‖θ‖² is quadratic:
    L(θ) = L* + (θ − θ*)ᵀA(θ − θ*) with A = XᵀX/n + αI, so its Rashomon set is an
    ellipsoid of volume V_P · δ^{P/2} / sqrt(det A) (δ = threshold − L*), and the ratio
    is that volume over the box volume (2·half_width)^P.

    Parameters
    ----------
    x : array-like of shape (n, P)
    y : array-like of shape (n,) or (n, 1)
    alpha : float
        Ridge penalty (≥ 0; 0 is least squares, which needs XᵀX of full rank).
    epsilon : float
    half_width : float
        The hypothesis space is the box [−half_width, half_width]^P.
    mode : {"relative", "absolute"}, default "absolute"

    Raises
    ------
    ValueError
        If the ellipsoid leaves the box, where the formula no longer holds.

    References
    ----------
    Semenova, Rudin & Parr 2022, Section 5 (the Rashomon ratio of ridge regression).
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    n, p = x.shape
    a = x.T @ x / n + alpha * np.eye(p)
    theta = np.linalg.solve(a, x.T @ y / n)
    best = float(np.mean((x @ theta - y) ** 2) + alpha * theta @ theta)
    delta = rashomon_threshold(best, epsilon, mode) - best
    extent = np.sqrt(delta * np.diag(np.linalg.inv(a)))  # half-axis-aligned reach of the ellipsoid
    if np.any(np.abs(theta) + extent > half_width):
        raise ValueError(f"the Rashomon ellipsoid leaves the box [-{half_width}, {half_width}]^{p} "
                         "(the analytic ratio needs it inside); increase half_width or lower epsilon")
    _, logdet = np.linalg.slogdet(a)
    log_ball = (p / 2) * math.log(math.pi) - math.lgamma(p / 2 + 1)
    log_ratio = log_ball + (p / 2) * math.log(delta) - 0.5 * logdet - p * math.log(2 * half_width)
    return RashomonRatio(ratio=math.exp(log_ratio), standard_error=0.0, n_samples=0,
                         n_members=0, threshold=best + delta, epsilon=float(epsilon),
                         mode=mode, kind="analytic")
