"""Pairwise barriers across a population, naive and aligned, with basins by clustering.

For ``N`` runs, the barrier of every pair's straight path -- as trained, and after
aligning the second run to the first -- fills two symmetric ``N x N`` matrices.
Average-linkage hierarchical clustering of the (aligned, when available) matrix,
read as a distance, orders the runs for display and cuts them into *basins*: groups
whose members are connected by low barriers.

References
----------
R. Entezari, H. Sedghi, O. Saukh and B. Neyshabur, "The Role of Permutation Invariance
in Linear Mode Connectivity of Neural Networks", ICLR 2022.
S. Ainsworth, J. Hayase and S. Srinivasa, "Git Re-Basin", ICLR 2023.
F. Draxler, K. Veschgini, M. Salmhofer and F. Hamprecht, "Essentially No Barriers in
Neural Network Energy Landscape", ICML 2018.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, leaves_list, linkage
from scipy.spatial.distance import squareform
from torch import Tensor, nn

from engine.nets import permutation_spec
from engine.probes.connectivity.align import apply_alignment
from engine.probes.connectivity.interpolation import BarrierKind, barrier, interpolate
from engine.probes.connectivity.lmc import ALIGN_METHODS, align_models
from engine.probes.core import LossFn

__all__ = ["BarrierMatrix", "barrier_matrix", "find_basins"]


@dataclass(frozen=True)
class BarrierMatrix:
    """Barriers between every pair of runs.

    Attributes
    ----------
    names : tuple of str
    naive : np.ndarray, shape (N, N)
        Symmetric, zero diagonal.
    aligned : np.ndarray or None, shape (N, N)
        After aligning the later run of each pair to the earlier (None when ``align="none"``).
    kind, metric, align, split, bn : str
        Barrier definition, metric, alignment method, data split and BN mode.
    order : np.ndarray, shape (N,)
        Leaf order of the clustering (use it to order rows and columns).
    basins : np.ndarray, shape (N,)
        Basin label (1, 2, ...) of each run, in ``names`` order.
    threshold : float
        Barrier height at which the dendrogram was cut.
    linkage : np.ndarray, shape (N - 1, 4)
        SciPy linkage matrix (average linkage).
    seconds : float
    """

    names: tuple[str, ...]
    naive: np.ndarray
    aligned: np.ndarray | None
    kind: str
    metric: str
    align: str
    split: str
    bn: str
    order: np.ndarray
    basins: np.ndarray
    threshold: float
    linkage: np.ndarray
    seconds: float = 0.0


def find_basins(matrix: np.ndarray, threshold: float | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Average-linkage clustering of a barrier matrix: ``(order, basins, linkage, threshold)``.

    Negative barriers count as 0. Without ``threshold`` the dendrogram is cut in the
    largest gap between consecutive merge heights, provided that gap is over half the
    top merge height; otherwise (and always for two runs) every run is in one basin.
    """
    d = np.clip((matrix + matrix.T) / 2, 0.0, None)
    np.fill_diagonal(d, 0.0)
    n = len(d)
    if n == 1:
        return np.zeros(1, dtype=int), np.ones(1, dtype=int), np.zeros((0, 4)), float(threshold or 0.0)
    z = linkage(squareform(d, checks=False), method="average")
    if threshold is None:
        heights = z[:, 2]  # non-decreasing for average linkage
        threshold = float(heights[-1]) + 1e-12  # one basin unless a clear gap says otherwise
        if len(heights) > 1:
            gaps = np.diff(heights)
            i = int(np.argmax(gaps))
            if gaps[i] > heights[-1] / 2:
                threshold = float((heights[i] + heights[i + 1]) / 2)
    basins = fcluster(z, t=threshold, criterion="distance")
    return leaves_list(z), basins, z, float(threshold)


def barrier_matrix(
    model: nn.Module,
    states: Sequence[Mapping[str, Tensor]] | Mapping[str, Mapping[str, Tensor]],
    data,
    *,
    align: str = "weight",
    kind: BarrierKind = "max_minus_linear",
    metric: str = "loss",
    alphas=25,
    split: str = "test",
    bn: str = "running",
    threshold: float | None = None,
    seed: int = 0,
    on_progress: Callable[[int, int], None] | None = None,
    loss_fn: LossFn | None = None,
) -> BarrierMatrix:
    """Naive and aligned barrier of every pair of runs, and the basins they form.

    Parameters
    ----------
    model : nn.Module
        The shared architecture.
    states : sequence or dict of state dicts
        ``N >= 2`` runs; dict keys become ``names``.
    data : pair, loader or Dataset-like
    align : {"none", "weight", "activation", "ste"}, default "weight"
        Each aligned permutation is checked to keep the run's function.
    kind, metric, alphas, split, bn
        As in :func:`engine.probes.connectivity.interpolation.interpolate` / :func:`barrier`.
    threshold : float, optional
        Basin cut height; see :func:`find_basins`.
    seed : int
    on_progress : callable, optional
        ``(pairs done, pairs)``.
    loss_fn : callable, optional
        The runs' loss (:func:`engine.probes.core.run_loss`); the one the targets imply by default.

    Returns
    -------
    BarrierMatrix
    """
    t0 = time.perf_counter()
    if align not in ALIGN_METHODS:
        raise ValueError(f"align must be one of {', '.join(ALIGN_METHODS)}; got {align!r}")
    names = tuple(states) if isinstance(states, Mapping) else tuple(f"run {i}" for i in range(len(states)))
    runs = list(states.values()) if isinstance(states, Mapping) else list(states)
    if len(runs) < 2:
        raise ValueError(f"a barrier matrix needs at least two runs; got {len(runs)}")
    spec = permutation_spec(model) if align != "none" else None
    n = len(runs)
    naive = np.zeros((n, n))
    aligned = np.zeros((n, n)) if align != "none" else None
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    kw = dict(alphas=alphas, split=split, bn=bn, seed=seed, loss_fn=loss_fn)
    for done, (i, j) in enumerate(pairs, start=1):
        curve = interpolate(model, runs[i], runs[j], data, **kw)
        naive[i, j] = naive[j, i] = barrier(curve, kind=kind, metric=metric).value
        if aligned is not None:
            al = align_models(model, runs[i], runs[j], data, method=align, spec=spec, seed=seed)
            permuted = apply_alignment(model, runs[j], al, data, spec=spec)
            curve = interpolate(model, runs[i], permuted, data, **kw)
            aligned[i, j] = aligned[j, i] = barrier(curve, kind=kind, metric=metric).value
        if on_progress is not None:
            on_progress(done, len(pairs))
    order, basins, z, cut = find_basins(aligned if aligned is not None else naive, threshold)
    return BarrierMatrix(names=names, naive=naive, aligned=aligned, kind=kind, metric=metric, align=align,
                         split=split if hasattr(data, "x_train") else "given", bn=bn, order=order, basins=basins,
                         threshold=cut, linkage=z, seconds=time.perf_counter() - t0)
