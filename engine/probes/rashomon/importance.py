"""Explanations across a Rashomon set: model reliance clouds and interaction clouds.

All members are evaluated together: their parameters are stacked (leading axis M, as
from ``torch.func.stack_module_state``) and run under ``vmap`` over
``functional_call``; for one permutation every feature subset's permuted copy of the
data is built at once, so a pass costs one batched forward of all members.

Permutations are the ones scikit-learn's ``permutation_importance`` draws for
``random_state=seed`` (the same shuffles for every column, re-applied cumulatively),
so with ``metric="accuracy"`` the values equal scikit-learn's.

References
----------
.. [1] A. Fisher, C. Rudin, F. Dominici, "All Models are Wrong, but Many are Useful:
   Learning a Variable's Importance by Studying an Entire Class of Prediction Models
   Simultaneously", JMLR, 2019 (model reliance, model class reliance).
.. [2] J. Dong, C. Rudin, "Exploring the cloud of variable importance for the set of
   all good models", Nature Machine Intelligence, 2020 (variable importance cloud).
.. [3] S. Li, R. Wang, Q. Deng, A. Barnard, "Exploring the cloud of feature interaction
   scores in a Rashomon set", ICLR, 2024 (FIS cloud, swarm and halo plots).
.. [4] J. Donnelly, S. Katta, C. Rudin, E. Browne, "The Rashomon Importance
   Distribution", NeurIPS, 2023.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from itertools import combinations
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vmap

__all__ = [
    "ImportanceCloud",
    "InteractionCloud",
    "permutation_indices",
    "stacked_forward",
    "variable_importance_cloud",
    "feature_interaction_cloud",
]

Metric = Literal["accuracy", "loss"]


@dataclass(frozen=True)
class ImportanceCloud:
    """Permutation importance (model reliance) of every feature for every member.

    Attributes
    ----------
    importances : np.ndarray
        Shape (M, D, R): drop in accuracy (``metric="accuracy"``) or rise in loss
        (``metric="loss"``) when feature d is permuted, per repeat r.
    mean : np.ndarray
        Mean over repeats, shape (M, D): the variable importance cloud.
    baseline : np.ndarray
        Unpermuted accuracy or loss per member, shape (M,).
    mcr_min, mcr_max : np.ndarray
        Model class reliance range: smallest and largest member importance per
        feature, shape (D,) (Fisher et al. 2019, difference form).
    feature_names : tuple[str, ...]
    metric : str
    """

    importances: np.ndarray
    mean: np.ndarray
    baseline: np.ndarray
    mcr_min: np.ndarray
    mcr_max: np.ndarray
    feature_names: tuple[str, ...]
    metric: str


@dataclass(frozen=True)
class InteractionCloud:
    """Feature interaction scores FIS(i, j) = φ_ij − φ_i − φ_j for every member.

    Attributes
    ----------
    pairs : np.ndarray
        Feature index pairs, shape (P, 2).
    fis : np.ndarray
        Shape (M, P), mean over repeats.
    joint : np.ndarray
        φ_ij, importance of permuting i and j together, shape (M, P).
    single : np.ndarray
        φ_i per feature, shape (M, D).
    feature_names : tuple[str, ...]
    metric : str
    """

    pairs: np.ndarray
    fis: np.ndarray
    joint: np.ndarray
    single: np.ndarray
    feature_names: tuple[str, ...]
    metric: str

    def pair_labels(self) -> list[str]:
        """"a × b" labels, one per pair."""
        return [f"{self.feature_names[i]} × {self.feature_names[j]}" for i, j in self.pairs]


def permutation_indices(n_samples: int, n_repeats: int, seed: int = 0) -> np.ndarray:
    """Row permutations, shape (R, N), identical to scikit-learn's for ``random_state=seed``.

    scikit-learn draws one seed from ``RandomState(seed)``, shuffles an index array in
    place once per repeat and applies it to the already-permuted column, so repeat r
    permutes by the composition of the first r shuffles.
    """
    if n_repeats < 1:
        raise ValueError(f"n_repeats must be >= 1; got {n_repeats}")
    inner = np.random.RandomState(np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1))
    idx, current = np.arange(n_samples), np.arange(n_samples)
    out = np.empty((n_repeats, n_samples), dtype=np.int64)
    for r in range(n_repeats):
        inner.shuffle(idx)
        current = current[idx]
        out[r] = current
    return out


def stacked_forward(model: nn.Module, stacked_params: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """Outputs of M members on the same inputs: shape (M, B, ...), module never mutated.

    Parameters
    ----------
    model : nn.Module
        Architecture only; buffers are taken from it.
    stacked_params : dict name -> Tensor of shape (M, *param_shape)
    x : Tensor of shape (B, ...)
    """
    def one(params, xx):
        return functional_call(model, params, (xx,))

    return vmap(one, in_dims=(0, None))(dict(stacked_params), x)


def _scores(out: Tensor, y: Tensor, metric: str) -> Tensor:
    """Accuracy or mean loss per (member, subset); out (M, S, N, C), y (N,) or (N, D)."""
    if metric == "accuracy":
        if y.is_floating_point():
            raise ValueError("metric='accuracy' needs integer class targets; use metric='loss' for regression")
        return (out.argmax(-1) == y).to(torch.float64).mean(-1)
    if y.is_floating_point():
        diff = out - y.reshape(y.shape[0], -1).to(out.dtype)
        return diff.pow(2).flatten(2).mean(-1).to(torch.float64)
    m, s, n, c = out.shape
    ce = F.cross_entropy(out.reshape(-1, c), y.repeat(m * s), reduction="none")
    return ce.reshape(m, s, n).mean(-1).to(torch.float64)


def _check(model, stacked_params, data, metric):
    if metric not in ("accuracy", "loss"):
        raise ValueError(f"metric must be 'accuracy' or 'loss'; got {metric!r}")
    x, y = data
    if x.ndim != 2:
        raise ValueError(f"permutation importance needs tabular inputs of shape (N, D); got {tuple(x.shape)}")
    sizes = {int(v.shape[0]) for v in stacked_params.values()}
    if len(sizes) != 1:
        raise ValueError(f"stacked_params must share the leading member axis; got sizes {sorted(sizes)}")
    return x, y, sizes.pop()


def _subset_importance(model, stacked_params, x, y, masks: Tensor, perms: np.ndarray,
                       metric: str, chunk: int | None):
    """Importance of permuting each column subset (masks (S, D) bool): (M, S, R), baseline (M,)."""
    with torch.no_grad():
        base = _scores(stacked_forward(model, stacked_params, x)[:, None], y, metric)[:, 0]  # (M,)
        m = base.shape[0]
        n, s_total = x.shape[0], masks.shape[0]
        chunk = chunk or max(1, (1 << 23) // max(1, m * n * 8))
        out = torch.empty((m, s_total, len(perms)), dtype=torch.float64, device=x.device)
        for r, perm in enumerate(perms):
            xp = x[torch.as_tensor(perm, device=x.device)]  # (N, D)
            for s in range(0, s_total, chunk):
                mk = masks[s:s + chunk]  # (S, D)
                xb = torch.where(mk[:, None, :], xp[None], x[None])  # (S, N, D)
                o = stacked_forward(model, stacked_params, xb.reshape(-1, x.shape[1]))  # (M, S*N, C)
                sc = _scores(o.reshape(m, mk.shape[0], n, -1), y, metric)  # (M, S)
                out[:, s:s + chunk, r] = (base[:, None] - sc) if metric == "accuracy" else (sc - base[:, None])
    return out.cpu(), base.cpu()


def _names(feature_names, d):
    names = tuple(feature_names) if feature_names is not None else tuple(f"x{j}" for j in range(d))
    if len(names) != d:
        raise ValueError(f"feature_names has {len(names)} names for {d} features")
    return names


def variable_importance_cloud(model: nn.Module, stacked_params: Mapping[str, Tensor], data, *,
                              n_repeats: int = 5, seed: int = 0, metric: Metric = "accuracy",
                              feature_names=None, chunk: int | None = None) -> ImportanceCloud:
    """Permutation importance of every feature for every member of a set of models.

    Parameters
    ----------
    model : nn.Module
        Architecture shared by the members.
    stacked_params : dict name -> Tensor (M, ...)
        Member parameters stacked on a leading axis.
    data : (x, y)
        x float (N, D); y int64 (N,) labels or float (N, k) regression targets.
    n_repeats : int, default 5
    seed : int, default 0
        Permutations as scikit-learn's ``permutation_importance(random_state=seed)``.
    metric : {"accuracy", "loss"}, default "accuracy"
        Importance = drop in accuracy, or rise in loss (cross-entropy / MSE).
    feature_names : sequence of str, optional
    chunk : int, optional
        Features permuted per batched forward (default: sized to ~8M output floats).

    Returns
    -------
    ImportanceCloud

    References
    ----------
    Fisher, Rudin & Dominici 2019; Dong & Rudin 2020.
    """
    x, y, _ = _check(model, stacked_params, data, metric)
    d = x.shape[1]
    perms = permutation_indices(x.shape[0], n_repeats, seed)
    masks = torch.eye(d, dtype=torch.bool).to(x.device)
    imp, base = _subset_importance(model, stacked_params, x, y, masks, perms, metric, chunk)
    mean = imp.mean(-1).numpy()
    return ImportanceCloud(importances=imp.numpy(), mean=mean, baseline=base.numpy(),
                           mcr_min=mean.min(axis=0), mcr_max=mean.max(axis=0),
                           feature_names=_names(feature_names, d), metric=metric)


def feature_interaction_cloud(model: nn.Module, stacked_params: Mapping[str, Tensor], data, *,
                              pairs=None, n_repeats: int = 5, seed: int = 0,
                              metric: Metric = "loss", feature_names=None,
                              chunk: int | None = None) -> InteractionCloud:
    """Feature interaction scores FIS(i, j) = φ_ij − φ_i − φ_j for every member.

    φ_S is the importance of permuting the columns in S with the same row shuffle
    (their joint distribution kept, their link to the rest broken). Additive features
    give FIS ≈ 0; a product term gives FIS clearly away from 0.

    Parameters
    ----------
    model, stacked_params, data, n_repeats, seed, feature_names, chunk
        As in :func:`variable_importance_cloud`.
    pairs : sequence of (i, j), optional
        Pairs to score (default: all D(D−1)/2).
    metric : {"loss", "accuracy"}, default "loss"
        Loss-based importance, as in Li et al.

    Returns
    -------
    InteractionCloud

    References
    ----------
    Li, Wang, Deng & Barnard 2024 (FIS in a Rashomon set).
    """
    x, y, _ = _check(model, stacked_params, data, metric)
    d = x.shape[1]
    pr = np.array(list(combinations(range(d), 2)) if pairs is None else pairs, dtype=np.int64)
    if (pr.ndim != 2 or pr.shape[1] != 2 or pr.size == 0 or pr.min() < 0 or pr.max() >= d
            or np.any(pr[:, 0] == pr[:, 1])):
        raise ValueError(f"pairs must be distinct feature index pairs in [0, {d}); got {pr.tolist()}")
    perms = permutation_indices(x.shape[0], n_repeats, seed)
    masks = torch.zeros((d + len(pr), d), dtype=torch.bool)  # singles, then pairs
    masks[torch.arange(d), torch.arange(d)] = True
    rows = torch.arange(d, d + len(pr))
    masks[rows, torch.as_tensor(pr[:, 0])] = True
    masks[rows, torch.as_tensor(pr[:, 1])] = True
    imp, _ = _subset_importance(model, stacked_params, x, y, masks.to(x.device), perms, metric, chunk)
    single, joint = imp[:, :d], imp[:, d:]  # (M, D, R), (M, P, R)
    fis = (joint - single[:, pr[:, 0]] - single[:, pr[:, 1]]).mean(-1)
    return InteractionCloud(pairs=pr, fis=fis.numpy(), joint=joint.mean(-1).numpy(),
                            single=single.mean(-1).numpy(), feature_names=_names(feature_names, d),
                            metric=metric)
