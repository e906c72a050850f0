"""2-D projections of representations: UMAP, PCA, t-SNE, and aligned across checkpoints.

Above ``max_points`` rows a class-stratified subsample is projected and the cap is
reported with the result, so a figure can say "5,000 of 60,000 points shown".
UMAP's first fit in a process compiles numba code (tens of seconds); a dashboard
worker calls :func:`warm_umap` at start-up, and pointing ``NUMBA_CACHE_DIR`` at a
persistent folder lets later processes reuse the compiled code
(``bench/umap_cold_start.py`` measures all three).

References
----------
.. [1] McInnes, L., Healy, J., Melville, J. "UMAP: Uniform Manifold Approximation and
   Projection for Dimension Reduction." arXiv:1802.03426, 2018 (and AlignedUMAP in
   umap-learn >= 0.5).
.. [2] van der Maaten, L., Hinton, G. "Visualizing Data using t-SNE." JMLR 9, 2008.
.. [3] Schönemann, P. H. "A generalized solution of the orthogonal Procrustes
   problem." Psychometrika 31, 1966 (aligning PCA frames).
"""

from __future__ import annotations

import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.linalg import orthogonal_procrustes

from engine.probes.representations.similarity import as_matrix

__all__ = [
    "AlignedProjection",
    "Projection",
    "aligned_projection",
    "project",
    "stratified_indices",
    "warm_umap",
]

METHODS = ("umap", "pca", "tsne")


@dataclass(frozen=True)
class Projection:
    """Low-dimensional coordinates of (a subsample of) the rows.

    Attributes
    ----------
    coords : numpy.ndarray
        ``(m, n_components)`` float32 coordinates of the projected rows.
    indices : numpy.ndarray
        ``(m,)`` rows of the input that were projected (sorted).
    n_total : int
        Rows in the input.
    cap : int or None
        The ``max_points`` cap in force; ``m < n_total`` means it was applied.
    method : str
    seed : int
    """

    coords: np.ndarray
    indices: np.ndarray
    n_total: int
    cap: int | None
    method: str
    seed: int

    @property
    def subsampled(self) -> bool:
        return len(self.indices) < self.n_total


@dataclass(frozen=True)
class AlignedProjection:
    """Projections of the same rows at several checkpoints, aligned so points move smoothly.

    ``coords`` has shape ``(T, m, n_components)``; other fields as in :class:`Projection`,
    plus ``labels`` (checkpoint labels, length ``T``).
    """

    coords: np.ndarray
    indices: np.ndarray
    n_total: int
    cap: int | None
    method: str
    seed: int
    labels: tuple[str, ...]

    @property
    def subsampled(self) -> bool:
        return len(self.indices) < self.n_total


def stratified_indices(n: int, cap: int | None, labels=None, seed: int = 0) -> np.ndarray:
    """Sorted rows to keep: all if ``n <= cap``, else ``cap`` rows drawn per class in
    proportion to class size (every class keeps at least one row) or uniformly without labels."""
    if cap is not None and cap < 1:
        raise ValueError(f"max_points must be a positive integer or None; got {cap}")
    if cap is None or n <= cap:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    if labels is None:
        return np.sort(rng.choice(n, size=cap, replace=False)).astype(np.int64)
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != n:
        raise ValueError(f"labels must have one entry per row ({n}); got {len(labels)}")
    classes, inv, counts = np.unique(labels, return_inverse=True, return_counts=True)
    quota = np.maximum(1, np.floor(counts * cap / n)).astype(int)
    # hand out the rows lost to rounding to the largest remainders
    short = cap - quota.sum()
    if short > 0:
        rem = counts * cap / n - np.floor(counts * cap / n)
        for c in np.argsort(-rem, kind="stable")[:short]:
            quota[c] += 1
    picked = [rng.choice(np.flatnonzero(inv == c), size=min(q, counts[c]), replace=False)
              for c, q in enumerate(quota)]
    return np.sort(np.concatenate(picked)).astype(np.int64)


def _pca(x: np.ndarray, k: int) -> np.ndarray:
    """Top-``k`` principal component scores, from the eigendecomposition of the smaller of
    the ``d x d`` covariance and the ``n x n`` Gram matrix (float64; far cheaper than an
    SVD of a tall matrix). Signs are fixed so the largest-magnitude loading is positive."""
    xc = x.astype(np.float64) - x.mean(0, dtype=np.float64)
    n, d = xc.shape
    if d <= n:
        evals, vecs = np.linalg.eigh(xc.T @ xc)  # ascending
        vecs = vecs[:, ::-1][:, :k]  # (d, k) loadings
        out = xc @ vecs
    else:
        evals, u = np.linalg.eigh(xc @ xc.T)
        evals, u = evals[::-1][:k], u[:, ::-1][:, :k]
        out = u * np.sqrt(np.clip(evals, 0.0, None))
        vecs = xc.T @ u  # (d, k) loadings, up to scale
    signs = np.sign(vecs[np.argmax(np.abs(vecs), axis=0), np.arange(vecs.shape[1])])
    signs[signs == 0] = 1.0
    out = out * signs
    if out.shape[1] < k:
        out = np.pad(out, ((0, 0), (0, k - out.shape[1])))
    return out


def _fit(x: np.ndarray, method: str, k: int, seed: int, **kwargs) -> np.ndarray:
    if method == "pca":
        return _pca(x, k)
    if method == "tsne":
        from sklearn.manifold import TSNE
        perplexity = min(kwargs.pop("perplexity", 30.0), max(1.0, (len(x) - 1) / 3))
        return TSNE(n_components=k, random_state=seed, perplexity=perplexity, init="pca", **kwargs).fit_transform(x)
    import umap
    n_neighbors = min(kwargs.pop("n_neighbors", 15), len(x) - 1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        reducer = umap.UMAP(n_components=k, random_state=seed, n_neighbors=n_neighbors, **kwargs)
        return reducer.fit_transform(x)


def _check(method: str, x: np.ndarray) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}; got {method!r}")
    if len(x) < 3:
        raise ValueError(f"projection needs at least 3 rows; got {len(x)}")


def project(
    features,
    method: str = "umap",
    *,
    seed: int = 0,
    labels=None,
    max_points: int | None = 5000,
    n_components: int = 2,
    **kwargs,
) -> Projection:
    """Project rows to ``n_components`` dimensions.

    Parameters
    ----------
    features : array-like, shape (n, d)
    method : {'umap', 'pca', 'tsne'}, default 'umap'
        UMAP [1]_ (umap-learn; extra ``kwargs`` go to ``umap.UMAP``), PCA (exact, via the
        smaller Gram/covariance eigendecomposition; milliseconds), or t-SNE [2]_ (scikit-learn).
    seed : int, default 0
        Seeds the subsample and the method; same seed -> same coordinates.
    labels : array-like, optional
        Class per row, used to stratify the subsample.
    max_points : int or None, default 5000
        Cap on projected rows; the cap is recorded in the result.
    n_components : int, default 2
    """
    x = as_matrix(features, "features").cpu().numpy()
    _check(method, x)
    idx = stratified_indices(len(x), max_points, labels, seed)
    coords = _fit(x[idx], method, n_components, seed, **kwargs)
    return Projection(coords=np.asarray(coords, dtype=np.float32), indices=idx, n_total=len(x), cap=max_points,
                      method=method, seed=seed)


def aligned_projection(
    features: Sequence,
    method: str = "umap",
    *,
    seed: int = 0,
    labels=None,
    max_points: int | None = 2000,
    checkpoint_labels: Sequence[str] | None = None,
    **kwargs,
) -> AlignedProjection:
    """2-D projections of the same rows at every checkpoint, aligned across checkpoints.

    ``'umap'`` uses umap-learn's ``AlignedUMAP`` [1]_ (each checkpoint tied to the next by
    the identity relation on rows); ``'pca'`` is the fast path: PCA per checkpoint, each
    frame rotated/reflected onto the previous one by orthogonal Procrustes [3]_.

    Parameters
    ----------
    features : sequence of array-like, each (n, d_t)
        One layer's activations at each checkpoint, on the same ``n`` samples.
    method : {'umap', 'pca'}
    seed, labels, max_points
        As in :func:`project` (one subsample shared by all checkpoints).
    checkpoint_labels : sequence of str, optional
        Names of the frames (default ``'0', '1', ...``).
    """
    mats = [as_matrix(f, "features").cpu().numpy() for f in features]
    if not mats:
        raise ValueError("aligned_projection needs at least one checkpoint; got none")
    if len({m.shape[0] for m in mats}) != 1:
        raise ValueError(f"every checkpoint must have the same rows; got {[m.shape[0] for m in mats]}")
    if method not in ("umap", "pca"):
        raise ValueError(f"aligned_projection method must be 'umap' or 'pca'; got {method!r}")
    _check(method, mats[0])
    idx = stratified_indices(len(mats[0]), max_points, labels, seed)
    subs = [m[idx] for m in mats]
    if method == "pca":
        frames = [_pca(subs[0], 2)]
        for m in subs[1:]:
            cur = _pca(m, 2)
            r, _ = orthogonal_procrustes(cur, frames[-1])
            frames.append(cur @ r)
    else:
        frames = _aligned_umap(subs, seed, **kwargs)
    names = tuple(checkpoint_labels) if checkpoint_labels is not None else tuple(str(i) for i in range(len(mats)))
    return AlignedProjection(coords=np.stack(frames).astype(np.float32), indices=idx, n_total=len(mats[0]),
                             cap=max_points, method=method, seed=seed, labels=names)


def _aligned_umap(subs: list[np.ndarray], seed: int, **kwargs) -> list[np.ndarray]:
    if len(subs) == 1:
        return [_fit(subs[0], "umap", 2, seed, **kwargs)]
    import umap
    n = len(subs[0])
    relation = {i: i for i in range(n)}
    n_neighbors = min(kwargs.pop("n_neighbors", 15), n - 1)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        mapper = umap.AlignedUMAP(n_neighbors=n_neighbors, random_state=seed, **kwargs)
        mapper.fit(subs, relations=[relation] * (len(subs) - 1))
    return [np.asarray(e) for e in mapper.embeddings_]


def warm_umap(
    n_samples: int = 4200,
    n_features: int = 8,
    *,
    aligned: bool = False,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
) -> float:
    """Compile UMAP's numba code with one small fit; returns the seconds it took.

    Call it once when a dashboard worker starts so no person waits for compilation.
    ``n_samples`` defaults just above umap-learn's 4,096-row threshold so the
    approximate nearest-neighbour path (NN-descent) used for real data is compiled
    too; ``aligned=True`` also compiles AlignedUMAP's layout optimiser.

    Parameters
    ----------
    cache_dir : path, optional
        Sets ``NUMBA_CACHE_DIR`` for this process so the functions umap-learn and
        pynndescent mark ``cache=True`` are stored there and loaded by later processes
        (measured: about 1.6x less CPU for import + first fit; see
        ``bench/umap_cold_start.py``). Only effective before ``umap`` is first imported;
        a warning says so otherwise.
    """
    if cache_dir is not None:
        _set_numba_cache_dir(cache_dir)
    import umap

    t0 = time.perf_counter()
    x = np.random.default_rng(seed).normal(size=(n_samples, n_features)).astype(np.float32)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        umap.UMAP(n_epochs=5, random_state=seed).fit(x)
        if aligned:
            small = [x[:300], x[:300] + 0.01]
            umap.AlignedUMAP(n_epochs=5, random_state=seed).fit(small, relations=[{i: i for i in range(300)}])
    return time.perf_counter() - t0


def _set_numba_cache_dir(cache_dir: str | os.PathLike) -> None:
    if "umap" in sys.modules:
        warnings.warn(f"warm_umap: umap is already imported, so cache_dir={str(cache_dir)!r} has no effect; "
                      "set NUMBA_CACHE_DIR before the first 'import umap'", RuntimeWarning, stacklevel=3)
        return
    Path(cache_dir).mkdir(parents=True, exist_ok=True)
    os.environ["NUMBA_CACHE_DIR"] = str(cache_dir)
    if "numba" in sys.modules:
        from numba.core import config

        config.reload_config()
