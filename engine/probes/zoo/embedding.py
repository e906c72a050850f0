"""Maps of a zoo: every model a point, placed so that map distances follow the model distances.

Classical (Torgerson) MDS is exact for Euclidean distances and takes milliseconds, so the
dashboard draws it at once; UMAP on the precomputed distances keeps local neighbourhoods
instead and is computed as a job.

References
----------
W. S. Torgerson, "Multidimensional scaling: I. Theory and method", Psychometrika 17, 1952.
L. McInnes, J. Healy and J. Melville, "UMAP: Uniform Manifold Approximation and Projection
for Dimension Reduction", arXiv:1802.03426, 2018.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .distances import ZooDistances

__all__ = ["EMBED_METHODS", "ModelEmbedding", "classical_mds", "embed_models"]

EMBED_METHODS = ("mds", "umap")


@dataclass(frozen=True)
class ModelEmbedding:
    """Coordinates of every model on the map.

    Attributes
    ----------
    labels : tuple of str
    coords : np.ndarray, shape (K, dim)
    method : str
        "mds" or "umap".
    explained : float
        MDS: the share of the positive eigenvalues of the double-centred squared distances
        that the kept dimensions hold (1.0 when the distances are Euclidean in ``dim``
        dimensions); NaN for UMAP.
    metric : str
        The distance embedded.
    """

    labels: tuple[str, ...]
    coords: np.ndarray
    method: str
    explained: float
    metric: str = ""


def _checked(matrix: np.ndarray) -> np.ndarray:
    d = np.asarray(matrix, dtype=np.float64)
    if d.ndim != 2 or d.shape[0] != d.shape[1]:
        raise ValueError(f"a distance matrix must be square; got shape {d.shape}")
    if np.isnan(d).any():
        n = int(np.isnan(d[np.triu_indices(len(d), 1)]).sum())
        raise ValueError(f"the distance matrix has {n} missing pairs (NaN): compute them first, or embed a "
                         "subset whose pairs are all defined (weight and barrier distances: one architecture)")
    return np.clip((d + d.T) / 2, 0.0, None)


def classical_mds(matrix: np.ndarray, dim: int = 2) -> tuple[np.ndarray, float]:
    """Classical MDS: ``(coords (K, dim), explained)``.

    ``B = -1/2 J D^2 J`` with the centring ``J = I - 11^T/K``; the coordinates are the top
    eigenvectors of ``B`` scaled by the square roots of their (positive) eigenvalues, so
    a configuration of points in ``dim`` dimensions is recovered up to rotation,
    reflection and translation. Signs are fixed (largest entry of each axis positive) so
    the same matrix always draws the same map.
    """
    d = _checked(matrix)
    k = len(d)
    j = np.eye(k) - 1.0 / k
    b = -0.5 * j @ (d**2) @ j
    evals, evecs = np.linalg.eigh((b + b.T) / 2)
    order = np.argsort(evals)[::-1]
    evals, evecs = evals[order], evecs[:, order]
    keep = np.clip(evals[:dim], 0.0, None)
    coords = evecs[:, :dim] * np.sqrt(keep)
    if coords.shape[1] < dim:  # fewer models than dimensions
        coords = np.pad(coords, ((0, 0), (0, dim - coords.shape[1])))
    signs = np.sign(coords[np.abs(coords).argmax(0), np.arange(dim)])
    coords = coords * np.where(signs == 0, 1.0, signs)
    positive = evals[evals > 0].sum()
    return coords, float(keep.sum() / positive) if positive > 0 else 1.0


def _umap(d: np.ndarray, dim: int, seed: int) -> np.ndarray:
    import umap  # optional heavy import (numba)

    k = len(d)
    if k < 4:
        raise ValueError(f"UMAP needs at least 4 models; got {k}. Use method='mds'")
    reducer = umap.UMAP(n_components=dim, metric="precomputed", n_neighbors=min(15, k - 1), random_state=seed,
                        init="random", min_dist=0.3)
    return np.asarray(reducer.fit_transform(d), dtype=np.float64)


def embed_models(distances: ZooDistances | np.ndarray, method: str = "mds", *, dim: int = 2,
                 seed: int = 0) -> ModelEmbedding:
    """Place every model on a ``dim``-dimensional map from its distances to the others.

    Parameters
    ----------
    distances : ZooDistances or np.ndarray, shape (K, K)
        Symmetric, no missing pairs; negative values (barriers) count as 0.
    method : {"mds", "umap"}, default "mds"
        Classical MDS (:func:`classical_mds`) or UMAP on the precomputed distances (seeded).
    dim : int, default 2
    seed : int, default 0
        UMAP's random state (MDS is deterministic).

    Returns
    -------
    ModelEmbedding
    """
    if method not in EMBED_METHODS:
        raise ValueError(f"method must be one of {', '.join(EMBED_METHODS)}; got {method!r}")
    if isinstance(distances, ZooDistances):
        labels, matrix, metric = distances.labels, distances.matrix, distances.metric
    else:
        matrix = np.asarray(distances)
        labels, metric = tuple(f"model {i}" for i in range(len(matrix))), ""
    if method == "mds":
        coords, explained = classical_mds(matrix, dim)
    else:
        coords, explained = _umap(_checked(matrix), dim, seed), float("nan")
    return ModelEmbedding(labels=tuple(labels), coords=coords, method=method, explained=explained, metric=metric)
