"""Topological RSA: the geo-topological transform of an RDM, and representations compared through it.

An RDM's large distances carry geometry that noise and nonlinear distortions move around; its
neighbourhood structure (which samples are close) carries the topology. The geo-topological (GT)
transform keeps the second and discards the first at a tunable grain: distances at or below a
lower bound ``l`` become 0 ("connected"), distances at or above an upper bound ``u`` become 1
("equally far"), and distances between are rescaled linearly, ``(d - l) / (u - l)``. Both bounds
are quantiles of the RDM's own off-diagonal entries, so the transform adapts to each
representation's scale. ``(l, u) = (0, 1)`` keeps the geometry (a min-max rescaled RDM);
``l = u`` keeps only the graph of "close" pairs (a pure topology).

tRSA compares two representations by correlating their transformed RDMs with the comparator of
plain RSA (:func:`engine.probes.representations.similarity.rsa`: Spearman by default, or Pearson).

References
----------
.. [1] Lin, B., Kriegeskorte, N. "The topology and geometry of neural representations."
   PNAS 121 (42), 2024 (arXiv:2309.11028).
.. [2] Kriegeskorte, N., Mur, M., Bandettini, P. "Representational similarity analysis."
   Front. Syst. Neurosci. 2008.
"""

from __future__ import annotations

import warnings

import numpy as np

import engine.probes.representations.similarity as sim

__all__ = ["DEFAULT_LOWER", "DEFAULT_UPPER", "geo_topological_bounds", "geo_topological_transform",
           "topological_rsa"]

#: default lower bound (quantile): the closest 5 % of pairs count as connected
DEFAULT_LOWER = 0.05
#: default upper bound (quantile): all but the closest 15 % of pairs count as equally far. With ten
#: balanced classes about 10 % of the pairs are within a class, so the between-class geometry
#: saturates; (0.1, 0.5) behaves almost like plain RSA (bench/topological_rsa.py)
DEFAULT_UPPER = 0.15


def _check_quantiles(lower: float, upper: float) -> None:
    for name, q in (("lower", lower), ("upper", upper)):
        if not (isinstance(q, (int, float, np.floating, np.integer)) and 0.0 <= q <= 1.0):
            raise ValueError(f"{name} must be a quantile in [0, 1] of the RDM's off-diagonal entries; got {q!r}")
    if lower > upper:
        raise ValueError(f"lower must not exceed upper (both quantiles); got lower={lower} > upper={upper}. "
                         "Swap them, or set them equal for a pure topology (a graph of close pairs)")


def _off_diagonal(rdm) -> tuple[np.ndarray, np.ndarray | None]:
    """The RDM's off-diagonal entries (condensed) and, for a square input, the triangle indices."""
    d = np.asarray(rdm, dtype=np.float64)
    if d.ndim == 1:
        vec, tri = d, None
    elif d.ndim == 2 and d.shape[0] == d.shape[1]:
        tri = np.triu_indices(d.shape[0], k=1)
        if not np.allclose(d, d.T, rtol=1e-10, atol=1e-12, equal_nan=True):
            raise ValueError(f"a square rdm must be symmetric; got a {d.shape[0]}x{d.shape[1]} matrix whose largest "
                             f"asymmetry is {np.nanmax(np.abs(d - d.T)):.3g}. Pass the condensed upper triangle "
                             "(scipy.spatial.distance.pdist) or symmetrise it")
        vec = d[tri]
    else:
        raise ValueError(f"rdm must be condensed (n(n-1)/2,) or square (n, n); got shape {d.shape}")
    if vec.size == 0:
        raise ValueError("rdm has no off-diagonal entries (fewer than 2 samples); the transform needs at least one")
    if not np.all(np.isfinite(vec)):
        bad = vec[~np.isfinite(vec)][:3]
        raise ValueError(f"rdm entries must be finite; got {bad!r}. A 'correlation' RDM is undefined for a "
                         "constant sample: drop such samples or use metric='euclidean'")
    return vec, tri


def geo_topological_bounds(rdm, lower: float = DEFAULT_LOWER, upper: float = DEFAULT_UPPER) -> tuple[float, float]:
    """The distances at the ``lower`` and ``upper`` quantiles of the RDM's off-diagonal entries.

    Quantiles are NumPy's default (linear interpolation between order statistics), as in
    rsatoolbox's ``geotopological_transform``.
    """
    _check_quantiles(lower, upper)
    vec, _ = _off_diagonal(rdm)
    lo, hi = np.quantile(vec, [lower, upper])
    return float(lo), float(hi)


def geo_topological_transform(rdm, lower: float = DEFAULT_LOWER, upper: float = DEFAULT_UPPER) -> np.ndarray:
    """The geo-topological (GT) transform of an RDM [1]_.

    With ``l, u`` the distances at the ``lower`` and ``upper`` quantiles of the off-diagonal
    entries::

        GT(d) = 0                  if d <= l
                (d - l) / (u - l)  if l < d < u
                1                  if d >= u

    When the bounds coincide (``lower == upper``, or ties in the RDM put both quantiles on the
    same distance) the middle branch is empty and the transform is the step ``GT(d) = [d > l]``:
    a graph whose edges are the pairs at or below the bound, the paper's purely topological
    extreme. ``(lower, upper) = (0, 1)`` is the min-max rescaled RDM, the purely geometric one.

    Properties: values lie in ``[0, 1]``; ``GT`` is non-decreasing in ``d``; it is unchanged by an
    increasing affine map of the distances, and which entries are 0 and which are 1 is unchanged
    by *any* strictly increasing map (the bounds are quantiles, so they move with the distances),
    hence the Spearman correlation of two transformed RDMs is too.

    Parameters
    ----------
    rdm : array-like, shape (n(n-1)/2,) or (n, n)
        Dissimilarities: condensed (as :func:`~engine.probes.representations.similarity.rdm` and
        :func:`scipy.spatial.distance.pdist` return) or a symmetric square matrix.
    lower, upper : float, default 0.05 and 0.15
        Quantiles in ``[0, 1]`` of the off-diagonal entries, ``lower <= upper``. The paper explores
        the ``(l, u)`` plane rather than prescribing one pair; the defaults make the closest 5 % of
        pairs "connected" and all but the closest 15 % "equally far", a neighbourhood scale (with ten
        balanced classes about 10 % of the pairs lie within a class).

    Returns
    -------
    numpy.ndarray
        Same shape as ``rdm``, float64 (a square input keeps a zero diagonal).

    References
    ----------
    .. [1] Lin, B., Kriegeskorte, N. "The topology and geometry of neural representations."
       PNAS 2024.
    """
    lo, hi = geo_topological_bounds(rdm, lower, upper)
    vec, tri = _off_diagonal(rdm)
    if hi > lo:
        out = np.clip((vec - lo) / (hi - lo), 0.0, 1.0)
    else:
        out = (vec > lo).astype(np.float64)
    if tri is None:
        return out
    n = np.asarray(rdm).shape[0]
    square = np.zeros((n, n))
    square[tri] = out
    return square + square.T


def topological_rsa(x, y, lower: float = DEFAULT_LOWER, upper: float = DEFAULT_UPPER, *,
                    metric: str = "correlation", compare: str = "spearman") -> float:
    """Topological RSA (tRSA) [1]_: correlation of the two representations' GT-transformed RDMs.

    Each representation's RDM between samples (``metric`` of :func:`scipy.spatial.distance.pdist`,
    as in :func:`~engine.probes.representations.similarity.rsa`) goes through
    :func:`geo_topological_transform` with its own quantile bounds; the transformed upper
    triangles are correlated with ``compare`` ('spearman', 'pearson' or 'kendall').

    Larger means more similar, in ``[-1, 1]``; symmetric in ``x, y``; ``tRSA(X, X) = 1``. With
    ``(lower, upper) = (0, 1)`` and a rank comparator it equals plain RSA. Inherits RSA's
    invariances (for 'euclidean': rotations, translation, isotropic scaling) and adds robustness to
    changes of the large distances: with Spearman it is exactly invariant to any strictly
    increasing map of either RDM. Returns nan with a warning when a transformed RDM is constant
    (e.g. ``lower = upper = 1``: every pair is "connected").

    Parameters
    ----------
    x, y : array-like, shapes (n, d_x) and (n, d_y)
        The same ``n >= 3`` samples in both.
    lower, upper : float
        Quantile bounds, as in :func:`geo_topological_transform`.
    metric, compare : str
        RDM metric and comparator, as in :func:`~engine.probes.representations.similarity.rsa`.
    """
    _check_quantiles(lower, upper)
    if compare not in ("spearman", "pearson", "kendall"):
        raise ValueError(f"compare must be 'spearman', 'pearson' or 'kendall'; got {compare!r}")
    a, b = sim.as_matrix(x, "x"), sim.as_matrix(y, "y")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"x and y must have the same rows (samples); got {a.shape[0]} and {b.shape[0]}")
    if a.shape[0] < 3:
        raise ValueError(f"topological_rsa needs at least 3 samples to correlate dissimilarities; got {a.shape[0]}")
    ga = geo_topological_transform(sim.rdm(a, metric), lower, upper)
    gb = geo_topological_transform(sim.rdm(b, metric), lower, upper)
    if np.ptp(ga) == 0 or np.ptp(gb) == 0:
        warnings.warn(f"topological_rsa: a transformed RDM is constant at bounds lower={lower}, upper={upper} "
                      "(every pair on one side of them); returning nan. Lower the bounds", RuntimeWarning,
                      stacklevel=2)
        return float("nan")
    return sim.compare_rdms(ga, gb, compare)
