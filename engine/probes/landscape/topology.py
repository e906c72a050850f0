"""The topology of a 2D loss surface: sublevel-set persistence, its merge tree and basins.

Sweep the grid values upward. A grid point lower than every already-swept neighbour
starts a new component (a local minimum is *born* at its value); a point that touches
two or more components joins them (a *saddle*), and by the elder rule every component
but the one with the lowest minimum *dies* there. ``death - birth`` is the minimum's
persistence: how deep its basin is before water spills into a lower one. The global
minimum never dies. The merges, in order, form the merge tree (leaves: minima;
internal nodes: saddles at their heights).

Connectivity: the grid values are the vertices (each is one loss evaluation), and
``connectivity=4`` joins the axis neighbours, the lower-star filtration of the grid's
cubical complex (gudhi ``CubicalComplex(vertices=...)``); ``connectivity=8`` also joins
diagonal neighbours, which is the 0-dim persistence of the complex whose top-dimensional
cells carry the values (gudhi ``CubicalComplex(top_dimensional_cells=...)``).

References
----------
H. Edelsbrunner and J. Harer, "Computational Topology: An Introduction", AMS (2010),
sections VII.1 (persistence) and the elder rule.
H. Carr, J. Snoeyink and U. Axen, "Computing contour trees in all dimensions",
Computational Geometry 24 (2003) (merge trees by union-find).
The GUDHI Project, "GUDHI User and Reference Manual", cubical complexes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SurfacePersistence", "gudhi_diagram", "surface_persistence"]

_OFFSETS = {4: ((-1, 0), (1, 0), (0, -1), (0, 1)),
            8: ((-1, 0), (1, 0), (0, -1), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))}


@dataclass(frozen=True)
class SurfacePersistence:
    """Sublevel-set persistence of a grid surface, with its merge tree and basins.

    Minima are numbered by birth (0 is the global minimum).

    Attributes
    ----------
    values : np.ndarray, shape (R1, R2)
        The swept grid (non-finite values swept last, as ``+inf``).
    connectivity : int
        4 or 8.
    minima : np.ndarray of int, shape (m, 2)
        Grid index ``(i, j)`` of each minimum.
    birth, death : np.ndarray, shape (m,)
        Value at the minimum and at the saddle where its component merges into an older
        one; ``death`` is ``inf`` for the global minimum.
    saddles : np.ndarray of int, shape (m, 2)
        Grid index of that saddle; ``(-1, -1)`` for the global minimum.
    killer : np.ndarray of int, shape (m,)
        The minimum whose component absorbs each one at its death; -1 for the global minimum.
    merges : np.ndarray, shape (m - 1, 4)
        The merge tree as a linkage: row ``k`` joins nodes ``merges[k, 0]`` (the elder side)
        and ``merges[k, 1]`` at height ``merges[k, 2]`` into node ``m + k`` holding
        ``merges[k, 3]`` minima; nodes ``0 .. m-1`` are the minima.
    arrival : np.ndarray of int, shape (R1, R2)
        The minimum whose component each grid point joined when the sweep reached it.
    alphas, betas : np.ndarray or None
        Grid coordinates, when built from a ``Surface``.
    """

    values: np.ndarray
    connectivity: int
    minima: np.ndarray
    birth: np.ndarray
    death: np.ndarray
    saddles: np.ndarray
    killer: np.ndarray
    merges: np.ndarray
    arrival: np.ndarray
    alphas: np.ndarray | None = None
    betas: np.ndarray | None = None

    @property
    def persistence(self) -> np.ndarray:
        """``death - birth`` of each minimum, shape (m,): the depth of its basin."""
        return self.death - self.birth

    @property
    def diagram(self) -> np.ndarray:
        """The 0-dim persistence diagram, ``(birth, death)`` rows, shape (m, 2)."""
        return np.stack([self.birth, self.death], 1)

    def kept(self, threshold: float = 0.0) -> np.ndarray:
        """Indices of the minima whose persistence exceeds ``threshold`` (the global one always)."""
        return np.flatnonzero(self.persistence > threshold)

    def basins(self, threshold: float = 0.0) -> np.ndarray:
        """Each grid point's basin: the index of its minimum after merging shallow ones.

        A minimum of persistence at most ``threshold`` is merged into the minimum that
        absorbed it (repeatedly), and so are the points that joined its component; what
        is left is one label per kept minimum, ``kept(threshold)``.

        Returns
        -------
        np.ndarray of int, shape (R1, R2)
        """
        if threshold < 0:
            raise ValueError(f"threshold must be at least 0; got {threshold!r}")
        rep = np.arange(len(self.birth))
        for i in np.argsort(-self.death, kind="stable"):  # killers die later, so resolve them first
            if self.persistence[i] <= threshold:
                rep[i] = rep[self.killer[i]]
        return rep[self.arrival]


def _prepare(surface) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    alphas = betas = None
    if hasattr(surface, "loss") and hasattr(surface, "alphas"):
        if getattr(surface, "betas", None) is None:
            raise ValueError("surface_persistence needs a 2D surface; got a 1D slice (betas is None)")
        alphas, betas, surface = np.asarray(surface.alphas), np.asarray(surface.betas), surface.loss
    values = np.array(surface, dtype=float)
    if values.ndim != 2 or min(values.shape) < 1:
        raise ValueError(f"surface_persistence needs a 2D grid of values; got shape {values.shape}")
    values[~np.isfinite(values)] = np.inf  # a diverged evaluation is higher than any finite loss
    return values, alphas, betas


def _find(parent: np.ndarray, v: int) -> int:
    root = v
    while parent[root] != root:
        root = parent[root]
    while parent[v] != root:  # path compression
        parent[v], v = root, parent[v]
    return root


def surface_persistence(surface, *, connectivity: int = 4) -> SurfacePersistence:
    """Sublevel-set persistence of a 2D grid surface by a union-find sweep.

    Parameters
    ----------
    surface : Surface or array-like, shape (R1, R2)
        A 2D :class:`~engine.probes.landscape.Surface` (its ``loss``) or a grid of values.
    connectivity : {4, 8}
        Which grid neighbours touch; see the module docstring.

    Returns
    -------
    SurfacePersistence

    Notes
    -----
    Equal values are swept in row-major index order, so plateaus give zero-persistence
    pairs only where that order makes a point a momentary minimum; they have ``death ==
    birth`` and are dropped by any positive threshold.
    """
    if connectivity not in _OFFSETS:
        raise ValueError(f"connectivity must be 4 or 8; got {connectivity!r}")
    values, alphas, betas = _prepare(surface)
    r1, r2 = values.shape
    flat = values.ravel()
    order = np.lexsort((np.arange(flat.size), flat))
    parent = np.full(flat.size, -1)
    root_min = np.full(flat.size, -1)  # minimum index of each root
    node = {}  # minimum index of a component -> its current merge-tree node
    arrival = np.empty(flat.size, dtype=int)
    minima, birth, death, saddles, killer, merges, size = [], [], [], [], [], [], {}
    for v in order:
        i, j = divmod(int(v), r2)
        roots = {_find(parent, a * r2 + b) for di, dj in _OFFSETS[connectivity]
                 if 0 <= (a := i + di) < r1 and 0 <= (b := j + dj) < r2 and parent[a * r2 + b] >= 0}
        parent[v] = v
        if not roots:  # a new component: a local minimum
            k = len(minima)
            minima.append((i, j))
            birth.append(flat[v])
            death.append(np.inf)
            saddles.append((-1, -1))
            killer.append(-1)
            root_min[v], node[k], size[k] = k, k, 1
            arrival[v] = k
            continue
        elder, *younger = sorted(roots, key=lambda r: root_min[r])  # lower index = lower birth
        e = root_min[elder]
        for r in younger:  # the elder rule: younger components die here
            y = root_min[r]
            death[y], saddles[y], killer[y] = flat[v], (i, j), e
            merges.append((node[e], node[y], flat[v], size[e] + size[y]))
            node[e], size[e] = ("merge", len(merges) - 1), size[e] + size[y]
            parent[r] = elder
        parent[v] = elder
        arrival[v] = e
    m = len(minima)

    def number(n) -> int:
        return n if isinstance(n, (int, np.integer)) else m + n[1]

    linkage = np.array([(number(a), number(b), h, c) for a, b, h, c in merges], dtype=float).reshape(-1, 4)
    return SurfacePersistence(
        values=values, connectivity=connectivity, minima=np.array(minima, dtype=int).reshape(-1, 2),
        birth=np.array(birth, dtype=float), death=np.array(death, dtype=float),
        saddles=np.array(saddles, dtype=int).reshape(-1, 2), killer=np.array(killer, dtype=int), merges=linkage,
        arrival=arrival.reshape(r1, r2), alphas=alphas, betas=betas)


def gudhi_diagram(values, *, connectivity: int = 4) -> np.ndarray:
    """The 0-dim sublevel persistence diagram of a 2D grid computed by gudhi, shape (m, 2).

    ``connectivity=4``: ``CubicalComplex(vertices=values)`` (lower-star filtration of the
    grid); 8: ``CubicalComplex(top_dimensional_cells=values)``. Rows sorted by birth,
    zero-length pairs dropped; the essential class has death ``inf``.
    """
    import gudhi

    if connectivity not in _OFFSETS:
        raise ValueError(f"connectivity must be 4 or 8; got {connectivity!r}")
    grid, _, _ = _prepare(values)
    key = "vertices" if connectivity == 4 else "top_dimensional_cells"
    cc = gudhi.CubicalComplex(**{key: grid})
    cc.compute_persistence(homology_coeff_field=2, min_persistence=0)
    pairs = np.asarray(cc.persistence_intervals_in_dimension(0), dtype=float).reshape(-1, 2)
    pairs = pairs[pairs[:, 1] > pairs[:, 0]]
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]
