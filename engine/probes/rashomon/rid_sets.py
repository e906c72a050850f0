"""Set finders for the Rashomon importance distribution: on one bootstrap resample, find the
Rashomon set and measure every member's model reliance on that resample.

- :class:`SampledSets`: a neural or linear model class; the optimum is refitted on the
  resample (L-BFGS) and its set sampled in the Hessian ellipsoid, filtered by the true loss.
- :class:`PopulationSets`: a fixed population (a zoo's checkpoints); the set on a resample
  is the models within ε of the best *on that resample*. The models are not retrained per
  resample, so this is RID over the population, not over the whole model class.
- :class:`TreeSets`: sparse decision trees enumerated by TreeFARMS on the resample.

Each is a frozen dataclass called as ``finder(x_b, y_b, seed) -> BootstrapSet``.

References
----------
.. [1] J. Donnelly, S. Katta, C. Rudin, E. P. Browne, "The Rashomon Importance
   Distribution", NeurIPS, 2023.
.. [2] A. Fisher, C. Rudin, F. Dominici, "All Models are Wrong, but Many are Useful",
   JMLR, 2019 (model reliance: rise in loss when a feature is permuted).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor, nn

from .importance import Metric, permutation_indices, stacked_forward, variable_importance_cloud
from .model_class import fit_optimum
from .rid import BootstrapSet
from .sampling import sample_rashomon_set
from .sets import Mode, rashomon_set
from .trees import predict_trees, rashomon_trees

__all__ = ["PopulationSets", "SampledSets", "TreeSets", "quantile_thresholds",
           "tree_model_reliance"]


def _metric_label(metric: str) -> str:
    return "rise in loss when permuted" if metric == "loss" else "drop in accuracy when permuted"


def _check_epsilon(epsilon: float) -> None:
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0; got {epsilon}")


@dataclass(frozen=True, eq=False)
class SampledSets:
    """A model class's Rashomon set on each resample: refit, sample the Hessian ellipsoid, filter.

    Parameters
    ----------
    model : nn.Module
        The architecture (e.g. ``nn.Linear(D, C)``, a small tanh MLP); never mutated.
    start : dict name -> Tensor
        Where L-BFGS starts on every resample (e.g. the optimum on all the data, so every
        resample's optimum is found in the same basin).
    epsilon : float
    mode : {"relative", "absolute"}, default "relative"
    n_samples : int, default 500
        Candidates drawn per resample; the accepted ones and the optimum are the set.
    l2 : float, default 0
        The objective is loss + l2·‖θ‖², for the fit, the set and the ellipsoid.
    fit_steps : int, default 200
    n_repeats : int, default 3
        Permutations per feature for model reliance.
    metric : {"loss", "accuracy"}, default "loss"
        Model reliance as rise in loss, or drop in accuracy.
    """

    model: nn.Module
    start: Mapping[str, Tensor]
    epsilon: float
    mode: Mode = "relative"
    n_samples: int = 500
    l2: float = 0.0
    fit_steps: int = 200
    n_repeats: int = 3
    metric: Metric = "loss"

    def __post_init__(self):
        _check_epsilon(self.epsilon)

    @property
    def metric_label(self) -> str:
        return _metric_label(self.metric)

    def __call__(self, x: Tensor, y: Tensor, seed: int) -> BootstrapSet:
        data = (x.double(), y.double() if y.is_floating_point() else y)
        optimum = fit_optimum(self.model, data, start=self.start, l2=self.l2, steps=self.fit_steps)
        sample = sample_rashomon_set(self.model, optimum, data, epsilon=self.epsilon, mode=self.mode,
                                     n_samples=self.n_samples, seed=seed, l2=self.l2)
        theta0 = torch.cat([optimum[n].reshape(-1) for n in sample.names]).cpu().numpy()
        thetas = np.concatenate([theta0[None], sample.thetas])  # (M, P): the optimum is always a member
        stacked = {n: v.to(x.device) for n, v in replace(sample, thetas=thetas).stacked_params(torch.float64).items()}
        cloud = variable_importance_cloud(self.model, stacked, data, n_repeats=self.n_repeats, seed=seed,
                                          metric=self.metric)
        return BootstrapSet(importances=cloud.mean, losses=np.concatenate([[sample.optimum_loss], sample.losses]),
                            threshold=sample.threshold)


@dataclass(frozen=True, eq=False)
class PopulationSets:
    """The models of a fixed population within ε of the best on each resample (e.g. a zoo).

    Parameters
    ----------
    groups : sequence of (nn.Module, dict name -> Tensor (G, ...))
        Models of one architecture stacked on a leading axis, one entry per architecture;
        member indices run through the groups in order.
    epsilon : float
    mode : {"relative", "absolute"}, default "relative"
        On the loss (cross-entropy or MSE) on the resample.
    n_repeats : int, default 3
    metric : {"loss", "accuracy"}, default "loss"
    """

    groups: Sequence[tuple[nn.Module, Mapping[str, Tensor]]]
    epsilon: float
    mode: Mode = "relative"
    n_repeats: int = 3
    metric: Metric = "loss"

    def __post_init__(self):
        _check_epsilon(self.epsilon)
        if not self.groups:
            raise ValueError("groups must hold at least one (module, stacked parameters) pair; got none")

    @property
    def metric_label(self) -> str:
        return _metric_label(self.metric)

    def losses(self, x: Tensor, y: Tensor) -> np.ndarray:
        """Loss of every model on (x, y), shape (M,), float64."""
        out = []
        with torch.no_grad():
            for module, stacked in self.groups:
                o = stacked_forward(module, stacked, x).double()  # (G, N, C)
                if y.is_floating_point():
                    out.append((o - y.reshape(y.shape[0], -1).double()).pow(2).flatten(1).mean(-1))
                else:
                    out.append(-torch.log_softmax(o, -1).gather(-1, y.expand(o.shape[0], -1)[..., None]).mean((1, 2)))
        return torch.cat(out).cpu().numpy()

    def __call__(self, x: Tensor, y: Tensor, seed: int) -> BootstrapSet:
        losses = self.losses(x, y)
        rs = rashomon_set(losses, epsilon=self.epsilon, mode=self.mode)
        imp = np.zeros((rs.size, x.shape[1]))
        start = 0
        for module, stacked in self.groups:
            g = int(next(iter(stacked.values())).shape[0])
            pos = np.flatnonzero((rs.indices >= start) & (rs.indices < start + g))  # rows of imp from this group
            if len(pos):
                sub = {k: v[torch.as_tensor(rs.indices[pos] - start, device=v.device)] for k, v in stacked.items()}
                imp[pos] = variable_importance_cloud(module, sub, (x, y), n_repeats=self.n_repeats, seed=seed,
                                                     metric=self.metric).mean
            start += g
        return BootstrapSet(importances=imp, losses=losses[rs.indices], threshold=rs.threshold)


def quantile_thresholds(x, n_thresholds: int = 3) -> list[np.ndarray]:
    """Per-column thresholds at the inner quantiles (k/(n+1), k = 1..n), distinct values only.

    A binary column ``x_j ≤ t`` per threshold makes continuous data fit for sparse trees.
    """
    if n_thresholds < 1:
        raise ValueError(f"n_thresholds must be >= 1; got {n_thresholds}")
    x = np.asarray(x, dtype=np.float64)
    levels = np.arange(1, n_thresholds + 1) / (n_thresholds + 1)
    return [np.unique(np.quantile(x[:, j], levels)) for j in range(x.shape[1])]


def _binarize(x: np.ndarray, thresholds: Sequence[np.ndarray] | None) -> tuple[np.ndarray, list[np.ndarray]]:
    """0/1 columns (one per threshold, ``x_j ≤ t``) and the binary columns of each original feature."""
    if thresholds is None:
        return x.astype(np.uint8), [np.array([j]) for j in range(x.shape[1])]
    if len(thresholds) != x.shape[1]:
        raise ValueError(f"thresholds has {len(thresholds)} entries for {x.shape[1]} features")
    cols, groups, at = [], [], 0
    for j, t in enumerate(thresholds):
        t = np.asarray(t, dtype=np.float64).reshape(-1)
        cols.append(x[:, j:j + 1] <= t[None, :])  # (N, T_j)
        groups.append(np.arange(at, at + len(t)))
        at += len(t)
    return np.concatenate(cols, axis=1).astype(np.uint8), groups


def tree_model_reliance(trees, x_bin, y, *, groups: Sequence[Sequence[int]] | None = None, n_repeats: int = 3,
                        seed: int = 0) -> np.ndarray:
    """Model reliance of every tree: rise in 0-1 error when a feature (a group of columns) is permuted.

    Parameters
    ----------
    trees : TreeRashomonSet
    x_bin : array-like (N, F) of 0/1
    y : array-like (N,)
    groups : sequence of column index sequences, optional
        The binary columns of each original feature, permuted together (with one row
        shuffle, as permuting the original feature would); default one group per column.
    n_repeats : int, default 3
    seed : int, default 0
        Permutations as :func:`~engine.probes.rashomon.permutation_indices`.

    Returns
    -------
    np.ndarray
        Shape (T, G), mean over repeats.
    """
    x = np.asarray(x_bin, dtype=np.uint8)
    yy = np.asarray(y).reshape(-1)
    groups = [np.arange(1) + j for j in range(x.shape[1])] if groups is None else [np.asarray(g) for g in groups]
    base = (predict_trees(trees, x) != yy[None]).mean(1)  # (T,)
    out = np.zeros((trees.size, len(groups)))
    for perm in permutation_indices(len(yy), n_repeats, seed):
        for g, cols in enumerate(groups):
            xp = x.copy()
            xp[:, cols] = x[perm][:, cols]
            out[:, g] += (predict_trees(trees, xp) != yy[None]).mean(1) - base
    return out / n_repeats


@dataclass(frozen=True, eq=False)
class TreeSets:
    """The sparse-decision-tree Rashomon set (TreeFARMS) on each resample, with tree model reliance.

    Parameters
    ----------
    regularization, rashomon_multiplier, depth_budget, max_trees, time_limit
        As in :func:`~engine.probes.rashomon.rashomon_trees` (relative ε on error + λ·leaves).
    thresholds : sequence of arrays, optional
        For continuous inputs: per feature, the thresholds t of binary columns ``x_j ≤ t``
        (e.g. :func:`quantile_thresholds` of the whole data, so every resample has the same
        columns); importance is then per original feature. None: inputs are already 0/1.
    n_repeats : int, default 3
    """

    regularization: float
    rashomon_multiplier: float
    depth_budget: int | None = None
    max_trees: int = 100_000
    time_limit: float | None = None
    thresholds: Sequence[np.ndarray] | None = None
    n_repeats: int = 3

    metric_label = "rise in 0-1 error when permuted"

    def __call__(self, x, y, seed: int) -> BootstrapSet:
        xn = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
        yn = np.asarray(y.detach().cpu() if hasattr(y, "detach") else y).reshape(-1)
        xb, groups = _binarize(xn, self.thresholds)
        trees = rashomon_trees(xb, yn, regularization=self.regularization,
                               rashomon_multiplier=self.rashomon_multiplier, depth_budget=self.depth_budget,
                               max_trees=self.max_trees, time_limit=self.time_limit)
        imp = tree_model_reliance(trees, xb, yn, groups=groups, n_repeats=self.n_repeats, seed=seed)
        return BootstrapSet(importances=imp, losses=trees.objective, threshold=trees.bound)
