"""Neural collapse, intrinsic dimension, neuron matching."""

import warnings

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group

from engine.probes.representations import (
    effective_rank,
    layer_dimensions,
    neural_collapse,
    neural_collapse_over_training,
    neuron_matching,
    participation_ratio,
    twonn_dimension,
)


def simplex_etf(c=10, d=32, noise=0.01, n=1000, seed=0):
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, c)))[0]  # (d, C) orthonormal columns
    means = 3.0 * (np.eye(c) - 1.0 / c) @ basis.T  # (C, d) centred simplex ETF
    y = np.arange(n) % c
    return means[y] + noise * rng.normal(size=(n, d)), y, means


def test_noisy_simplex_etf_is_collapsed():
    h, y, means = simplex_etf()
    nc = neural_collapse(h, y, classifier=(torch.tensor(means), torch.zeros(10)))
    assert nc.nc1 < 1e-3 and nc.nc2_etf_error < 1e-2 and nc.nc2_equinorm < 1e-2 and nc.nc2_equiangular < 1e-2
    assert nc.nc3 < 1e-3 and nc.nc4 == 1.0
    assert neural_collapse(h, y).nc4 == 1.0 and np.isnan(neural_collapse(h, y).nc3)


def test_uncollapsed_features_score_far_from_collapse():
    rng = np.random.default_rng(1)
    y = np.arange(1000) % 10
    nc = neural_collapse(rng.normal(size=(1000, 32)), y, classifier=rng.normal(size=(10, 32)))
    assert nc.nc1 > 10 and nc.nc2_etf_error > 0.3 and nc.nc3 > 0.5 and nc.nc4 < 0.5


def test_nc1_matches_pinv_reference():
    rng = np.random.default_rng(2)
    y = rng.integers(0, 4, 300)
    h = rng.normal(size=(300, 6)) + 2.0 * rng.normal(size=(4, 6))[y]
    mu = np.stack([h[y == c].mean(0) for c in range(4)])
    sw = sum(np.outer(v, v) for v in h - mu[y]) / len(h)
    m = mu - mu.mean(0)
    sb = m.T @ m / 4
    assert neural_collapse(h, y).nc1 == pytest.approx(np.trace(sw @ np.linalg.pinv(sb)) / 4, rel=1e-8)


def test_neural_collapse_errors_and_over_training():
    h, y, means = simplex_etf(n=200)
    with pytest.raises(ValueError, match=r"shape \(n_classes, n_features\) = \(10, 32\); got \(32, 10\)"):
        neural_collapse(h, y, classifier=means.T)
    with pytest.raises(ValueError, match="at least 2 classes; got 1"):
        neural_collapse(h, np.zeros(200, dtype=int))
    curve = neural_collapse_over_training([h + s * np.random.default_rng(5).normal(size=h.shape) for s in (2.0, 0.0)],
                                          y, steps=[10, 20])
    assert curve.nc1.shape == (2,) and curve.nc1[0] > curve.nc1[1] and list(curve.steps) == [10, 20]


def ball(n, dim, ambient, seed=0):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=(n, dim))
    g *= rng.uniform(size=(n, 1)) ** (1.0 / dim) / np.linalg.norm(g, axis=1, keepdims=True)
    return g @ ortho_group.rvs(ambient, random_state=seed)[:dim]


def test_twonn_on_a_5_ball_in_r20():
    assert twonn_dimension(ball(2000, 5, 20)) == pytest.approx(5.0, abs=0.5)


def test_twonn_without_discarding_leaves_out_only_the_point_whose_cdf_is_one():
    x = ball(2000, 5, 20)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no divide-by-zero from -log(1 - 1)
        d = twonn_dimension(x, discard_fraction=0.0)
    assert d == pytest.approx(5.0, abs=0.5)
    # floor(2000 * (1 - 3e-4)) = 1999: the same fit, the largest ratio alone left out
    assert d == twonn_dimension(x, discard_fraction=3e-4)
    assert twonn_dimension(ball(3, 2, 4), discard_fraction=0.0) > 0  # fewest points: two fitted


def test_twonn_drops_duplicates_and_validates():
    x = ball(500, 3, 10)
    assert twonn_dimension(np.concatenate([x, x[:100]])) == pytest.approx(twonn_dimension(x))
    with pytest.raises(ValueError, match="at least 3 distinct points; got 2"):
        twonn_dimension(np.ones((10, 3)) * np.arange(10)[:, None] % 2)


def test_participation_ratio_and_effective_rank():
    iso = np.random.default_rng(3).normal(size=(5000, 4)) @ ortho_group.rvs(8, random_state=3)[:4]
    assert participation_ratio(iso) == pytest.approx(4.0, rel=0.05)
    assert effective_rank(iso) == pytest.approx(4.0, rel=0.05)
    line = np.outer(np.arange(20.0), np.ones(5))
    assert participation_ratio(line) == pytest.approx(1.0) and effective_rank(line) == pytest.approx(1.0)
    dims = layer_dimensions({"a": iso, "b": ball(400, 2, 6)})
    assert dims.layers == ("a", "b") and list(dims.width) == [8, 6] and dims.twonn[1] == pytest.approx(2, abs=0.4)


def test_neuron_matching_recovers_a_permutation():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(300, 12))
    perm = rng.permutation(12)
    b = 2.0 * a[:, perm] + 1.0 + 0.01 * rng.normal(size=(300, 12))
    match = neuron_matching(a, np.concatenate([b, np.zeros((300, 1))], 1))  # plus a dead unit
    assert dict(map(tuple, match.pairs)) == {int(p): i for i, p in enumerate(perm)}
    assert match.correlations.min() > 0.99 and np.all(np.diff(match.correlations) <= 0)
    assert match.correlation.shape == (12, 13) and np.all(match.correlation[:, 12] == 0)
