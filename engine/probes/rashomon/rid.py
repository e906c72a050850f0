"""The Rashomon importance distribution (RID): each feature's importance over the Rashomon
set, stabilised over bootstrap resamples of the data.

For b = 1..B, D⁽ᵇ⁾ is n rows drawn with replacement from the n rows of the data, R_b the
Rashomon set found on D⁽ᵇ⁾, and φ_j(f, D⁽ᵇ⁾) the importance of feature j for member f,
measured on D⁽ᵇ⁾. The RID of feature j is the mixture whose CDF is

    RID_j(k) = (1/B) Σ_b (1/|R_b|) Σ_{f ∈ R_b} 1[φ_j(f, D⁽ᵇ⁾) ≤ k]

(Donnelly et al. 2023, the estimator of their Eq. (1) with the counting measure on a
finite or sampled set): every bootstrap weighs the same and, inside one bootstrap,
every member weighs the same. For a set sampled uniformly in parameter space (the
Hessian ellipsoid, filtered), weighting samples equally is weighting by volume, as the
paper does for continuous model classes.

The set on each bootstrap comes from a *set finder*: any callable
``(x_b, y_b, seed) -> BootstrapSet``. Finders for a sampled neural / linear model class,
a fixed population (a zoo) and sparse trees are in :mod:`engine.probes.rashomon.rid_sets`.

References
----------
.. [1] J. Donnelly, S. Katta, C. Rudin, E. P. Browne, "The Rashomon Importance
   Distribution: Getting RID of Unstable, Single Model-based Variable Importance",
   NeurIPS, 2023.
.. [2] A. Fisher, C. Rudin, F. Dominici, "All Models are Wrong, but Many are Useful",
   JMLR, 2019 (model reliance, the importance RID uses).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

__all__ = ["BootstrapSet", "ImportanceDistribution", "bootstrap_indices", "importance_distribution",
           "rashomon_importance_distribution"]

QUANTILE_LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)


@dataclass(frozen=True)
class BootstrapSet:
    """The Rashomon set found on one bootstrap resample and its members' importances.

    Attributes
    ----------
    importances : np.ndarray
        φ_j(f, D⁽ᵇ⁾) for every member f and feature j, shape (M_b, D).
    losses : np.ndarray
        Members' objective on the resample, shape (M_b,), all ≤ ``threshold``.
    threshold : float
        The Rashomon threshold on this resample.
    """

    importances: np.ndarray
    losses: np.ndarray
    threshold: float


SetFinder = Callable[[torch.Tensor, torch.Tensor, int], BootstrapSet]


@dataclass(frozen=True)
class ImportanceDistribution:
    """Each feature's importance distribution over Rashomon sets of bootstrap resamples (RID).

    The distribution of feature j is the weighted sample ``values[:, j]`` with ``weights``.

    Attributes
    ----------
    values : np.ndarray
        Importance of every (bootstrap, member) pair, shape (S, D), S = Σ_b |R_b|.
    weights : np.ndarray
        Mixture weight of each row, 1 / (B · |R_b|), shape (S,); sums to 1.
    bootstrap : np.ndarray
        The bootstrap each row comes from, shape (S,).
    set_sizes : np.ndarray
        |R_b|, shape (B,).
    thresholds : np.ndarray
        The Rashomon threshold on each resample, shape (B,).
    mean : np.ndarray
        Expected importance under RID, shape (D,).
    quantile_levels : np.ndarray
        Shape (Q,).
    quantiles : np.ndarray
        RID quantiles, shape (Q, D): the smallest k with RID_j(k) ≥ level.
    prob_above : np.ndarray
        P(φ_j > ``importance_threshold``) under RID, shape (D,).
    importance_threshold : float
    feature_names : tuple[str, ...]
    metric : str
        What the importance measures (e.g. rise in cross-entropy, rise in 0-1 error).
    seed : int
    """

    values: np.ndarray
    weights: np.ndarray
    bootstrap: np.ndarray
    set_sizes: np.ndarray
    thresholds: np.ndarray
    mean: np.ndarray
    quantile_levels: np.ndarray
    quantiles: np.ndarray
    prob_above: np.ndarray
    importance_threshold: float
    feature_names: tuple[str, ...]
    metric: str
    seed: int

    @property
    def n_bootstraps(self) -> int:
        return int(self.set_sizes.shape[0])

    def cdf(self, k) -> np.ndarray:
        """RID_j(k) for every k and feature j, shape (K, D)."""
        k = np.atleast_1d(np.asarray(k, dtype=np.float64))
        below = self.values[None, :, :] <= k[:, None, None]  # (K, S, D)
        return np.einsum("ksd,s->kd", below, self.weights)

    def quantile(self, levels) -> np.ndarray:
        """RID quantiles at ``levels`` (in [0, 1]), shape (Q, D)."""
        return _weighted_quantiles(self.values, self.weights, np.atleast_1d(np.asarray(levels, dtype=np.float64)))


def _weighted_quantiles(values: np.ndarray, weights: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Smallest v with Σ_{values ≤ v} weights ≥ level, per column; values (S, D) -> (Q, D)."""
    if np.any((levels < 0) | (levels > 1)):
        raise ValueError(f"quantile levels must be in [0, 1]; got {levels.tolist()}")
    order = np.argsort(values, axis=0, kind="stable")  # (S, D)
    cum = np.cumsum(weights[order], axis=0)  # (S, D)
    cum /= cum[-1:]
    out = np.empty((len(levels), values.shape[1]))
    for j in range(values.shape[1]):
        pos = np.searchsorted(cum[:, j], levels - 1e-12, side="left").clip(0, len(cum) - 1)
        out[:, j] = values[order[pos, j], j]
    return out


def bootstrap_indices(n_rows: int, n_bootstraps: int, seed: int = 0) -> np.ndarray:
    """Row indices of ``n_bootstraps`` resamples with replacement, shape (B, n_rows)."""
    if n_rows < 1:
        raise ValueError(f"n_rows must be >= 1; got {n_rows}")
    if n_bootstraps < 1:
        raise ValueError(f"n_bootstraps must be >= 1; got {n_bootstraps}")
    rng = np.random.default_rng(np.random.SeedSequence([seed, 0]))
    return rng.integers(0, n_rows, size=(n_bootstraps, n_rows))


def _set_seeds(n_bootstraps: int, seed: int) -> list[int]:
    """One independent seed per bootstrap for the set finder (sampling, permutations)."""
    children = np.random.SeedSequence([seed, 1]).spawn(n_bootstraps)
    return [int(c.generate_state(1)[0] & 0x7FFFFFFF) for c in children]


def importance_distribution(importances: Sequence[np.ndarray], *, thresholds: Sequence[float] | None = None,
                            importance_threshold: float = 0.0, feature_names=None, metric: str = "",
                            quantile_levels: Sequence[float] = QUANTILE_LEVELS,
                            seed: int = 0) -> ImportanceDistribution:
    """The RID mixture from per-bootstrap importance matrices.

    Parameters
    ----------
    importances : sequence of np.ndarray, each (M_b, D)
        Importance of every member of the Rashomon set of bootstrap b.
    thresholds : sequence of float, optional
        The Rashomon threshold of each bootstrap (kept for the record).
    importance_threshold : float, default 0
        ``prob_above`` is P(φ_j > this).
    feature_names : sequence of str, optional
    metric : str
        What the importances measure.
    quantile_levels : sequence of float
    seed : int
        The seed the resamples were drawn with (kept for the record).

    Returns
    -------
    ImportanceDistribution
    """
    mats = [np.asarray(m, dtype=np.float64) for m in importances]
    if not mats:
        raise ValueError("importances must hold at least one bootstrap's matrix; got none")
    widths = {m.shape[1] if m.ndim == 2 else -1 for m in mats}
    if len(widths) != 1 or -1 in widths:
        raise ValueError(f"every bootstrap's importances must be (M_b, D) with one D; got shapes "
                         f"{[m.shape for m in mats][:8]}")
    sizes = np.array([m.shape[0] for m in mats])
    if np.any(sizes == 0):
        raise ValueError(f"bootstrap(s) {np.flatnonzero(sizes == 0).tolist()} have an empty Rashomon set; every "
                         "set holds at least its best model: check the set finder")
    d = widths.pop()
    names = tuple(feature_names) if feature_names is not None else tuple(f"x{j}" for j in range(d))
    if len(names) != d:
        raise ValueError(f"feature_names has {len(names)} names for {d} features")
    values = np.concatenate(mats)  # (S, D)
    if not np.all(np.isfinite(values)):
        raise ValueError("importances contain non-finite values (a diverged member?)")
    weights = np.repeat(1.0 / (len(mats) * sizes), sizes)  # (S,): bootstraps equal, members equal inside one
    levels = np.asarray(quantile_levels, dtype=np.float64)
    return ImportanceDistribution(
        values=values, weights=weights, bootstrap=np.repeat(np.arange(len(mats)), sizes), set_sizes=sizes,
        thresholds=np.asarray(thresholds if thresholds is not None else np.full(len(mats), np.nan), dtype=np.float64),
        mean=weights @ values, quantile_levels=levels, quantiles=_weighted_quantiles(values, weights, levels),
        prob_above=weights @ (values > importance_threshold), importance_threshold=float(importance_threshold),
        feature_names=names, metric=metric, seed=int(seed))


def rashomon_importance_distribution(data, find_set: SetFinder, *, n_bootstraps: int = 20, seed: int = 0,
                                     importance_threshold: float = 0.0, feature_names=None, metric: str | None = None,
                                     quantile_levels: Sequence[float] = QUANTILE_LEVELS,
                                     progress: Callable[[float, str], None] | None = None
                                     ) -> ImportanceDistribution:
    """The Rashomon importance distribution of every feature (Donnelly et al. 2023).

    Parameters
    ----------
    data : (x, y)
        x (N, D) tabular inputs (tensor or array), y (N,) labels or targets.
    find_set : callable (x_b, y_b, seed) -> BootstrapSet
        Finds the Rashomon set on a resample and measures its members' importance on that
        resample: :class:`~engine.probes.rashomon.rid_sets.SampledSets` (a neural or linear
        model class), :class:`~engine.probes.rashomon.rid_sets.PopulationSets` (a zoo),
        :class:`~engine.probes.rashomon.rid_sets.TreeSets` (sparse trees), or your own.
    n_bootstraps : int, default 20
        B, resamples of N rows with replacement.
    seed : int, default 0
        Draws the resamples and, through one derived seed per bootstrap, everything the
        set finder samples. Same seed, same result.
    importance_threshold : float, default 0
        ``prob_above`` is P(importance > this).
    feature_names : sequence of str, optional
    metric : str, optional
        What the importance measures (default: the finder's ``metric_label``).
    quantile_levels : sequence of float, default (0.05, 0.25, 0.5, 0.75, 0.95)
    progress : callable(fraction, message), optional

    Returns
    -------
    ImportanceDistribution

    References
    ----------
    Donnelly, Katta, Rudin & Browne 2023.
    """
    x, y = (torch.as_tensor(v) for v in data)
    if x.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(f"data must be (x, y) with x of shape (N, D) and len(y) = N; got x {tuple(x.shape)}, "
                         f"y {tuple(y.shape)}")
    report = progress or (lambda fraction, message: None)
    rows = torch.as_tensor(bootstrap_indices(x.shape[0], n_bootstraps, seed), device=x.device)
    sets = []
    for b, set_seed in enumerate(_set_seeds(n_bootstraps, seed)):
        report(b / n_bootstraps, f"bootstrap {b + 1}/{n_bootstraps}: Rashomon set and importances")
        found = find_set(x[rows[b]], y[rows[b]], set_seed)
        sets.append(found)
    report(1.0, "mixing the bootstraps")
    label = metric if metric is not None else getattr(find_set, "metric_label", "")
    return importance_distribution([s.importances for s in sets], thresholds=[s.threshold for s in sets],
                                   importance_threshold=importance_threshold, feature_names=feature_names,
                                   metric=label, quantile_levels=quantile_levels, seed=seed)
