"""Clusters of a zoo by hierarchical linkage, and basins: the merge tree of the barrier distance.

With single linkage, cutting the tree at height ``t`` puts two models in one cluster
exactly when a chain of models joins them in which every step is at most ``t`` apart. For
the barrier distance that is the basin structure: models share a basin when they are
linked by paths whose loss stays within ``t`` of the straight line between the endpoints
(Entezari et al. 2022). Average linkage is the steadier choice for the other distances.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, leaves_list, linkage
from scipy.spatial.distance import squareform

from .distances import ZooDistances

__all__ = ["LINKAGES", "ZooClusters", "cluster_models"]

LINKAGES = ("single", "average")


@dataclass(frozen=True)
class ZooClusters:
    """A hierarchical clustering of the models and its cut.

    Attributes
    ----------
    labels : tuple of str
    linkage : np.ndarray, shape (K - 1, 4)
        SciPy linkage matrix (merge heights in column 2).
    order : np.ndarray, shape (K,)
        Leaf order of the dendrogram.
    clusters : np.ndarray, shape (K,)
        Cluster id (1, 2, ...) of each model in ``labels`` order, numbered by first appearance.
    threshold : float
        The cut height.
    method : str
        "single" or "average".
    """

    labels: tuple[str, ...]
    linkage: np.ndarray
    order: np.ndarray
    clusters: np.ndarray
    threshold: float
    method: str

    @property
    def n_clusters(self) -> int:
        return int(len(np.unique(self.clusters)))

    def members(self, cluster: int) -> tuple[str, ...]:
        return tuple(name for name, c in zip(self.labels, self.clusters) if c == cluster)


def _renumber(raw: np.ndarray) -> np.ndarray:
    first: dict[int, int] = {}
    return np.array([first.setdefault(int(c), len(first) + 1) for c in raw])


def cluster_models(distances: ZooDistances | np.ndarray, *, threshold: float, method: str = "average",
                   labels: tuple[str, ...] | None = None) -> ZooClusters:
    """Hierarchical clustering of a distance matrix, cut at ``threshold``.

    Parameters
    ----------
    distances : ZooDistances or np.ndarray, shape (K, K)
        Symmetric, without missing pairs; negative values (barriers) count as 0.
    threshold : float
        Models whose merge height is at most ``threshold`` share a cluster.
    method : {"single", "average"}, default "average"
        "single" gives the basins of a barrier matrix (see the module docstring).
    labels : tuple of str, optional
        For a plain matrix.

    Returns
    -------
    ZooClusters
    """
    if method not in LINKAGES:
        raise ValueError(f"method must be one of {', '.join(LINKAGES)}; got {method!r}")
    if not np.isfinite(threshold):
        raise ValueError(f"threshold must be a finite number; got {threshold!r}")
    if isinstance(distances, ZooDistances):
        labels, matrix = distances.labels, distances.matrix
    else:
        matrix = np.asarray(distances, dtype=np.float64)
        labels = labels or tuple(f"model {i}" for i in range(len(matrix)))
    if np.isnan(matrix).any():
        raise ValueError("the distance matrix has missing pairs (NaN); cluster a subset whose pairs are all defined")
    d = np.clip((matrix + matrix.T) / 2, 0.0, None)
    np.fill_diagonal(d, 0.0)
    k = len(d)
    if k < 2:
        return ZooClusters(tuple(labels), np.zeros((0, 4)), np.arange(k), np.ones(k, dtype=int), float(threshold),
                           method)
    z = linkage(squareform(d, checks=False), method=method)
    raw = fcluster(z, t=float(threshold), criterion="distance")
    return ZooClusters(tuple(labels), z, leaves_list(z), _renumber(raw), float(threshold), method)
