"""Sublevel persistence of grid surfaces: the union-find sweep against gudhi, against a flood fill
by level, and on sums of Gaussian wells whose minima and saddles are known."""

import numpy as np
import pytest
from scipy import ndimage

from engine.probes.landscape import Surface, SurfacePersistence, gudhi_diagram, surface_persistence

STRUCTURE = {4: ndimage.generate_binary_structure(2, 1), 8: ndimage.generate_binary_structure(2, 2)}


def _finite_pairs(p: SurfacePersistence) -> np.ndarray:
    pairs = p.diagram[p.death > p.birth]
    return pairs[np.lexsort((pairs[:, 1], pairs[:, 0]))]


def _flood_fill_diagram(values: np.ndarray, connectivity: int) -> np.ndarray:
    """Brute force: label the sublevel set at every level; a component holding several older ones
    keeps the one born lowest, the others die at that level."""
    prev = np.zeros(values.shape, dtype=int)
    births: dict[int, float] = {}
    pairs = []
    for h in np.unique(values):
        labels, n = ndimage.label(values <= h, structure=STRUCTURE[connectivity])
        new_births = {}
        for lab in range(1, n + 1):
            olds = np.unique(prev[(labels == lab) & (prev > 0)])
            if len(olds) == 0:
                new_births[lab] = h
                continue
            b = sorted(births[o] for o in olds)
            pairs += [(x, h) for x in b[1:]]
            new_births[lab] = b[0]
        prev, births = labels, new_births
    pairs += [(b, np.inf) for b in births.values()]
    out = np.array(pairs, dtype=float)
    out = out[out[:, 1] > out[:, 0]]
    return out[np.lexsort((out[:, 1], out[:, 0]))]


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("seed", range(6))
def test_union_find_matches_gudhi_and_a_flood_fill_on_random_grids(seed, connectivity):
    rng = np.random.default_rng(seed)
    values = rng.normal(size=(rng.integers(3, 10), rng.integers(3, 10)))
    p = surface_persistence(values, connectivity=connectivity)
    np.testing.assert_array_equal(_finite_pairs(p), gudhi_diagram(values, connectivity=connectivity))
    np.testing.assert_array_equal(_finite_pairs(p), _flood_fill_diagram(values, connectivity))
    # every minimum is a strict local minimum of the grid, born at its own value
    for (i, j), b in zip(p.minima, p.birth):
        assert values[i, j] == b
        near = ndimage.binary_dilation(np.eye(1, values.size, i * values.shape[1] + j, dtype=bool).reshape(
            values.shape), structure=STRUCTURE[connectivity])
        assert b == values[near].min()


def _wells(centres, depths, width=0.35, n=81, lim=2.0):
    x = np.linspace(-lim, lim, n)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    f = sum(-d * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * width**2)) for (cx, cy), d in zip(centres, depths))
    return x, f


def test_two_gaussian_wells_give_two_minima_and_the_saddle_on_the_line_between():
    x, f = _wells([(-1.0, 0.0), (1.0, 0.0)], [1.0, 0.6])
    p = surface_persistence(f)
    assert len(p.birth) == 2 and p.death[0] == np.inf
    np.testing.assert_array_equal(x[p.minima[:, 0]], [-1.0, 1.0])
    np.testing.assert_array_equal(x[p.minima[:, 1]], [0.0, 0.0])
    # f is lowest at y = 0 in every column, so the lowest pass between the wells runs along that row:
    # the saddle is the highest point of the row between the two minima
    row = f[:, 40]
    i0, i1 = p.minima[:, 0]
    assert p.death[1] == row[i0 : i1 + 1].max()
    assert x[p.saddles[1, 1]] == 0.0
    assert p.persistence[1] == pytest.approx(p.death[1] - f[i1, 40])
    assert p.merges.shape == (1, 4) and list(p.merges[0, [0, 1, 3]]) == [0, 1, 2]


def test_three_wells_basins_follow_the_threshold():
    x, f = _wells([(-1.0, -1.0), (1.0, -1.0), (0.0, 1.0)], [1.0, 0.8, 0.5])
    p = surface_persistence(f)
    assert len(p.birth) == 3
    depths = np.sort(p.persistence[1:])
    assert set(np.unique(p.basins(0.0))) == {0, 1, 2}
    mid = float(depths.mean())
    labels = p.basins(mid)
    assert len(np.unique(labels)) == 2 and set(np.unique(labels)) == set(p.kept(mid))
    assert np.all(p.basins(float(depths[-1])) == 0)  # everything drains into the global minimum
    # each basin holds its own minimum and is one connected piece of the grid
    for k in np.unique(labels):
        i, j = p.minima[k]
        assert labels[i, j] == k
        assert ndimage.label(labels == k, structure=STRUCTURE[4])[1] == 1
    # the merge tree's heights are the deaths, in sweep order
    np.testing.assert_array_equal(p.merges[:, 2], np.sort(p.death[1:]))
    assert p.merges[-1, 3] == 3


def test_a_surface_result_is_read_through_its_loss_and_grid():
    x, f = _wells([(0.0, 0.0)], [1.0], n=21)
    s = Surface(alphas=x, betas=x, loss=f, accuracy=np.full_like(f, np.nan), center_loss=0.0, center_accuracy=0.0,
                directions=({}, {}), split="train", bn="running", n_samples=1, strategy="loop")
    p = surface_persistence(s)
    assert len(p.birth) == 1 and p.alphas is x
    f[3, 4] = np.nan  # a diverged point is swept last, never a minimum
    assert len(surface_persistence(f).birth) == 1


def test_errors_name_the_bad_value():
    with pytest.raises(ValueError, match="connectivity must be 4 or 8; got 6"):
        surface_persistence(np.zeros((3, 3)), connectivity=6)
    with pytest.raises(ValueError, match=r"needs a 2D grid of values; got shape \(5,\)"):
        surface_persistence(np.zeros(5))
    s1 = Surface(alphas=np.arange(3.0), betas=None, loss=np.zeros(3), accuracy=np.zeros(3), center_loss=0.0,
                 center_accuracy=0.0, directions=({},), split="train", bn="running", n_samples=1, strategy="loop")
    with pytest.raises(ValueError, match="needs a 2D surface; got a 1D slice"):
        surface_persistence(s1)
    with pytest.raises(ValueError, match="threshold must be at least 0; got -1"):
        surface_persistence(np.zeros((3, 3))).basins(-1)


@pytest.mark.parametrize("connectivity", [4, 8])
@pytest.mark.parametrize("seed", range(4))
def test_plateaus_and_ties_give_the_same_nonzero_pairs(seed, connectivity):
    values = np.random.default_rng(seed).integers(0, 4, size=(8, 7)).astype(float)
    p = surface_persistence(values, connectivity=connectivity)
    np.testing.assert_array_equal(_finite_pairs(p), gudhi_diagram(values, connectivity=connectivity))
    np.testing.assert_array_equal(_finite_pairs(p), _flood_fill_diagram(values, connectivity))
    assert len(np.unique(p.basins(0.0))) == len(p.kept(0.0))
