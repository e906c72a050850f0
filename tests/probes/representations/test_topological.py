"""Topological RSA: the geo-topological transform against an explicit loop, the RDMs against
rsatoolbox's definitions, invariances, the grid, and the paper's robustness claim in simulation."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from scipy.spatial.distance import pdist, squareform
from scipy.stats import ortho_group

import engine.probes.representations.similarity as S
from engine.probes import geo_topological_bounds, geo_topological_transform, topological_rsa
from engine.probes.representations import similarity_grid

RNG = np.random.default_rng(7)
X = RNG.normal(size=(40, 8))
Y = np.tanh(X @ RNG.normal(size=(8, 6))) + 0.3 * RNG.normal(size=(40, 6))
D = pdist(X)
BOUNDS = [(0.0, 1.0), (0.05, 0.15), (0.1, 0.5), (0.3, 0.3), (0.0, 0.0), (0.25, 1.0)]


# --- slow, obvious references -----------------------------------------------------------
def ref_quantile(values, q):
    """Linear interpolation between order statistics (NumPy's and rsatoolbox's default)."""
    v = sorted(values)
    pos = q * (len(v) - 1)
    k = math.floor(pos)
    return v[k] if k + 1 >= len(v) else v[k] + (pos - k) * (v[k + 1] - v[k])


def ref_transform(square, lower, upper):
    """The transform of Lin & Kriegeskorte written pair by pair over a square RDM."""
    n = len(square)
    off = [square[i][j] for i in range(n) for j in range(i + 1, n)]
    lo, hi = ref_quantile(off, lower), ref_quantile(off, upper)
    out = np.zeros((n, n))
    for i in range(n):
        for j in range(n):
            if i == j:
                continue
            d = square[i][j]
            if d <= lo:
                out[i, j] = 0.0
            elif d >= hi:
                out[i, j] = 1.0
            else:
                out[i, j] = (d - lo) / (hi - lo)
    return out


def ref_rsatoolbox_rdm(x, method):
    """rsatoolbox's calc_rdm definitions, written out: 'euclidean' is the squared Euclidean
    distance divided by the number of channels; 'correlation' is 1 - Pearson r of the two patterns."""
    n, d = x.shape
    out = []
    for i in range(n):
        for j in range(i + 1, n):
            if method == "euclidean":
                out.append(sum((x[i, k] - x[j, k]) ** 2 for k in range(d)) / d)
            else:
                a, b = x[i] - x[i].mean(), x[j] - x[j].mean()
                out.append(1.0 - float(a @ b) / math.sqrt(float(a @ a) * float(b @ b)))
    return np.array(out)


# --- the transform ------------------------------------------------------------------------
@pytest.mark.parametrize("lower,upper", BOUNDS)
def test_transform_equals_explicit_loop(lower, upper):
    square = squareform(D)
    np.testing.assert_allclose(geo_topological_transform(square, lower, upper), ref_transform(square, lower, upper),
                               atol=1e-12)
    np.testing.assert_allclose(geo_topological_transform(D, lower, upper),
                               squareform(ref_transform(square, lower, upper), checks=False), atol=1e-12)


def test_transform_properties():
    g = geo_topological_transform(D, 0.1, 0.5)
    lo, hi = geo_topological_bounds(D, 0.1, 0.5)
    assert g.min() == 0.0 and g.max() == 1.0
    order = np.argsort(D, kind="stable")
    assert np.all(np.diff(g[order]) >= 0)  # non-decreasing in the distance
    assert np.all(g[D <= lo] == 0) and np.all(g[D >= hi] == 1)
    assert np.mean(g == 0) == pytest.approx(0.1, abs=2 / len(D))
    assert np.mean(g == 1) == pytest.approx(0.5, abs=2 / len(D))
    # (0, 1) is the min-max rescaled RDM: pure geometry
    np.testing.assert_allclose(geo_topological_transform(D, 0.0, 1.0), (D - D.min()) / np.ptp(D), atol=1e-12)
    # lower == upper is a graph: 1 exactly for the pairs farther than the bound
    np.testing.assert_array_equal(geo_topological_transform(D, 0.3, 0.3), (D > np.quantile(D, 0.3)).astype(float))


@pytest.mark.parametrize("f", [np.sqrt, np.exp, lambda d: d**3, lambda d: np.log1p(d) + 4.0])
def test_quantile_bounds_follow_monotone_maps(f):
    """Which pairs are 0 and which are 1 is invariant to any strictly increasing map of the distances,
    so the Spearman correlation of transformed RDMs is too; affine maps leave every value unchanged."""
    g, gf = geo_topological_transform(D, 0.1, 0.5), geo_topological_transform(f(D), 0.1, 0.5)
    np.testing.assert_array_equal(g == 0, gf == 0)
    np.testing.assert_array_equal(g == 1, gf == 1)
    assert S.compare_rdms(g, gf, "spearman") == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(geo_topological_transform(3.5 * D + 2.0, 0.1, 0.5), g, atol=1e-12)


def test_ties_put_both_bounds_on_one_distance():
    d = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 3.0, 4.0, 5.0])  # quantiles 0.1 and 0.5 are both 1.0
    assert geo_topological_bounds(d, 0.1, 0.5) == (1.0, 1.0)
    np.testing.assert_array_equal(geo_topological_transform(d, 0.1, 0.5), [0, 0, 0, 0, 0, 0, 1, 1, 1, 1])


def test_transform_errors():
    with pytest.raises(ValueError, match=r"lower must not exceed upper .*lower=0.6 > upper=0.2"):
        geo_topological_transform(D, 0.6, 0.2)
    with pytest.raises(ValueError, match=r"upper must be a quantile in \[0, 1\].*got 1.5"):
        geo_topological_transform(D, 0.1, 1.5)
    with pytest.raises(ValueError, match="square rdm must be symmetric"):
        geo_topological_transform(np.triu(squareform(D)))
    with pytest.raises(ValueError, match=r"condensed .* or square .*got shape \(3, 4\)"):
        geo_topological_transform(np.zeros((3, 4)))
    with pytest.raises(ValueError, match="must be finite"):
        geo_topological_transform(np.array([0.1, np.nan, 0.3]))
    with pytest.raises(ValueError, match="no off-diagonal entries"):
        geo_topological_transform(np.zeros(0))


# --- the geometric part against rsatoolbox ------------------------------------------------
def test_rdm_matches_rsatoolbox_definitions():
    """rdm(x, 'correlation') is rsatoolbox's 'correlation' RDM; rsatoolbox's 'euclidean' is
    rdm(x, 'sqeuclidean') / n_channels (both written out pair by pair above)."""
    x = X[:15]
    np.testing.assert_allclose(S.rdm(x, "correlation"), ref_rsatoolbox_rdm(x, "correlation"), atol=1e-12)
    np.testing.assert_allclose(S.rdm(x, "sqeuclidean") / x.shape[1], ref_rsatoolbox_rdm(x, "euclidean"), atol=1e-12)


def test_against_rsatoolbox_itself():
    """Runs where rsatoolbox is importable (it is not a dependency; e.g. pip install --target DIR rsatoolbox
    h5py scikit-image lazy_loader and DIR on PYTHONPATH)."""
    pytest.importorskip("rsatoolbox")
    from rsatoolbox.data import Dataset
    from rsatoolbox.rdm import RDMs, calc_rdm
    from rsatoolbox.rdm.transform import geotopological_transform

    data = Dataset(X)
    np.testing.assert_allclose(calc_rdm(data, method="correlation").get_vectors()[0], S.rdm(X, "correlation"),
                               atol=1e-12)
    euclid = calc_rdm(data, method="euclidean").get_vectors()[0]
    np.testing.assert_allclose(euclid, S.rdm(X, "sqeuclidean") / X.shape[1], atol=1e-12)
    # rsatoolbox sets every already-rescaled value above the upper-bound *distance* to 1, which is
    # only harmless when that distance is >= 1; scale the RDM so that it is, then both agree.
    d = 10.0 * euclid / np.quantile(euclid, 0.05)
    for lower, upper in ((0.05, 0.15), (0.1, 0.5), (0.0, 1.0)):
        theirs = geotopological_transform(RDMs(d[None].copy()), lower, upper).get_vectors()[0]
        np.testing.assert_allclose(geo_topological_transform(d, lower, upper), theirs, atol=1e-12)


# --- tRSA -----------------------------------------------------------------------------------
@pytest.mark.parametrize("lower,upper", [(0.05, 0.15), (0.1, 0.5), (0.2, 0.2)])
def test_trsa_properties(lower, upper):
    assert topological_rsa(X, X, lower, upper) == pytest.approx(1.0, abs=1e-12)
    assert topological_rsa(X, Y, lower, upper) == pytest.approx(topological_rsa(Y, X, lower, upper), abs=1e-12)
    q = ortho_group.rvs(8, random_state=3)
    assert topological_rsa(X, 2.5 * X @ q + 1.0, lower, upper, metric="euclidean") == pytest.approx(1.0, abs=1e-12)
    assert -1.0 <= topological_rsa(X, Y, lower, upper) <= 1.0


@pytest.mark.parametrize("compare", ["spearman", "pearson"])
def test_trsa_with_full_bounds_is_rsa(compare):
    assert topological_rsa(X, Y, 0.0, 1.0, compare=compare) == pytest.approx(S.rsa(X, Y, compare=compare), abs=1e-12)


def test_trsa_separates_related_from_unrelated():
    unrelated = RNG.normal(size=X.shape)
    assert topological_rsa(X, Y, metric="euclidean") > topological_rsa(X, unrelated, metric="euclidean") + 0.2


def test_trsa_errors():
    with pytest.raises(ValueError, match="same rows \\(samples\\); got 40 and 39"):
        topological_rsa(X, Y[:39])
    with pytest.raises(ValueError, match="at least 3 samples"):
        topological_rsa(X[:2], Y[:2])
    with pytest.raises(ValueError, match="compare must be"):
        topological_rsa(X, Y, compare="cosine")
    with pytest.raises(ValueError, match="lower must not exceed upper"):
        topological_rsa(X, Y, 0.5, 0.1)
    with pytest.warns(RuntimeWarning, match="transformed RDM is constant"):
        assert np.isnan(topological_rsa(X, Y, 1.0, 1.0))  # every pair at or below the top quantile


# --- grid -------------------------------------------------------------------------------------
def test_grid_equals_pairwise():
    layers_a = {f"a{i}": RNG.normal(size=(30, d)) for i, d in enumerate((3, 12))}
    layers_b = {f"b{i}": np.tanh(v @ RNG.normal(size=(v.shape[1], 5))) for i, v in enumerate(layers_a.values())}
    for kw in ({}, {"lower": 0.1, "upper": 0.5, "rdm_metric": "euclidean"}, {"lower": 0.2, "upper": 0.2}):
        grid = similarity_grid(layers_a, layers_b, "trsa", **kw)
        pair_kw = {"lower": kw.get("lower", 0.05), "upper": kw.get("upper", 0.15),
                   "metric": kw.get("rdm_metric", "correlation")}
        ref = [[topological_rsa(a, b, **pair_kw) for b in layers_b.values()] for a in layers_a.values()]
        np.testing.assert_allclose(grid.values, ref, atol=1e-10)
        assert grid.metric == "trsa" and grid.larger_is_similar
    with pytest.raises(ValueError, match="lower must not exceed upper"):
        similarity_grid(layers_a, layers_b, "trsa", lower=0.9, upper=0.1)


# --- the paper's claim, in simulation (bench/topological_rsa.py draws the figure from the same code)
def _bench():
    path = Path(__file__).resolve().parents[3] / "bench" / "topological_rsa.py"
    spec = importlib.util.spec_from_file_location("bench_topological_rsa", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("shape", ["clusters", "ring"])
def test_topology_stable_while_geometry_changes(shape):
    """B = tanh(rotated A + geometry noise sigma) + per-sample noise, seeds fixed: as sigma grows, RSA
    falls far while tRSA at the default (topological) bounds stays high; a B with shuffled samples
    (another topology) scores near 0 under tRSA, so the high values are not an artefact."""
    bench = _bench()
    sigmas = (0.0, 1.0, 2.0)
    rsa_, _, trsa_, control = bench.sweep(shape, sigmas=sigmas, seeds=range(5)).mean(2)
    assert rsa_[0] - rsa_[-1] > 0.3  # the geometry changed
    assert trsa_.min() > 0.65 and trsa_[0] - trsa_[-1] < 0.2  # the topology did not
    assert np.all(trsa_[1:] > rsa_[1:] + 0.3)
    assert np.all(np.abs(control) < 0.1)
