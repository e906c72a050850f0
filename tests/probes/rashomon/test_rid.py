"""The Rashomon importance distribution: against an explicit loop over bootstraps and members,
its mixture weights and quantiles, seeds, and Chen's ground-truth example (which features matter)."""

import numpy as np
import pytest
import torch
from torch import nn

from engine import data as zdata
from engine.probes import (
    BootstrapSet,
    PopulationSets,
    SampledSets,
    TreeSets,
    bootstrap_indices,
    fit_optimum,
    importance_distribution,
    permutation_indices,
    quantile_thresholds,
    rashomon_importance_distribution,
    rashomon_threshold,
)


def _tiny(n=40, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = (x[:, 0] + 0.3 * torch.randn(n, generator=g, dtype=torch.float64) > 0).long()
    return x, y


def _population(m=6, d=3, seed=0):
    torch.manual_seed(seed)
    model = nn.Linear(d, 2).double()
    stacked = {"weight": torch.randn(m, 2, d, dtype=torch.float64) * torch.tensor([2.0, 0.5, 0.1]).double(),
               "bias": torch.randn(m, 2, dtype=torch.float64) * 0.1}
    return model, stacked


def _reference_rid(x, y, model, stacked, *, epsilon, n_bootstraps, seed, n_repeats):
    """RID by hand: loop over bootstraps, over models, over features and repeats; no vmap, no batching."""
    rows = bootstrap_indices(len(x), n_bootstraps, seed)
    seeds = [int(c.generate_state(1)[0] & 0x7FFFFFFF) for c in np.random.SeedSequence([seed, 1]).spawn(n_bootstraps)]
    m = stacked["weight"].shape[0]
    values, weights = [], []

    def loss(i, xx, yy):
        out = xx @ stacked["weight"][i].T + stacked["bias"][i]
        return float(torch.nn.functional.cross_entropy(out, yy))

    for b in range(n_bootstraps):
        xb, yb = x[rows[b]], y[rows[b]]
        losses = [loss(i, xb, yb) for i in range(m)]
        tau = rashomon_threshold(min(losses), epsilon, "relative")
        members = [i for i in range(m) if losses[i] <= tau]
        perms = permutation_indices(len(xb), n_repeats, seeds[b])
        for i in members:
            phi = []
            for j in range(x.shape[1]):
                rises = []
                for perm in perms:
                    xp = xb.clone()
                    xp[:, j] = xb[perm, j]
                    rises.append(loss(i, xp, yb) - losses[i])
                phi.append(np.mean(rises))
            values.append(phi)
            weights.append(1.0 / (n_bootstraps * len(members)))
    return np.array(values), np.array(weights)


def test_matches_an_explicit_loop_over_bootstraps_and_members():
    x, y = _tiny()
    model, stacked = _population()
    finder = PopulationSets([(model, stacked)], epsilon=0.3, n_repeats=2)
    rid = rashomon_importance_distribution((x, y), finder, n_bootstraps=4, seed=3)
    values, weights = _reference_rid(x, y, model, stacked, epsilon=0.3, n_bootstraps=4, seed=3, n_repeats=2)
    np.testing.assert_allclose(rid.values, values, atol=1e-10)
    np.testing.assert_allclose(rid.weights, weights, rtol=1e-12)
    grid = np.linspace(values.min() - 0.01, values.max() + 0.01, 25)
    cdf_ref = np.array([[weights @ (values[:, j] <= k) for j in range(3)] for k in grid])
    np.testing.assert_allclose(rid.cdf(grid), cdf_ref, atol=1e-12)
    np.testing.assert_allclose(rid.mean, weights @ values, atol=1e-12)
    np.testing.assert_allclose(rid.prob_above, [weights @ (values[:, j] > 0) for j in range(3)], atol=1e-12)


def test_every_bootstrap_weighs_the_same_whatever_its_set_size():
    rid = importance_distribution([np.array([[1.0]]), np.array([[0.0], [0.0], [0.0]])])
    np.testing.assert_allclose(rid.weights, [0.5, 1 / 6, 1 / 6, 1 / 6])
    assert rid.weights.sum() == pytest.approx(1.0)
    assert rid.mean[0] == pytest.approx(0.5)  # not 1/4, as pooling the four models would give
    assert rid.prob_above[0] == pytest.approx(0.5)
    np.testing.assert_allclose(rid.quantile([0.25, 0.5, 0.75])[:, 0], [0.0, 0.0, 1.0])
    np.testing.assert_allclose(rid.cdf([-1.0, 0.0, 0.99, 1.0])[:, 0], [0.0, 0.5, 0.5, 1.0])


def test_quantiles_are_the_inverse_of_the_weighted_cdf():
    rng = np.random.default_rng(0)
    rid = importance_distribution([rng.normal(size=(k, 4)) for k in (3, 7, 11, 2)])
    levels = np.linspace(0.01, 0.99, 17)
    q = rid.quantile(levels)  # (Q, D)
    for j in range(4):
        at = rid.cdf(q[:, j])[:, j]
        assert np.all(at >= levels - 1e-12)  # F(q) >= level
        just_below = rid.cdf(q[:, j] - 1e-9)[:, j]
        assert np.all(just_below < levels + 1e-12)  # and q is the smallest such value


def test_same_seed_same_result_other_seed_other_resamples():
    x, y = _tiny()
    model, stacked = _population()
    finder = PopulationSets([(model, stacked)], epsilon=0.3, n_repeats=2)
    a = rashomon_importance_distribution((x, y), finder, n_bootstraps=3, seed=5)
    b = rashomon_importance_distribution((x, y), finder, n_bootstraps=3, seed=5)
    c = rashomon_importance_distribution((x, y), finder, n_bootstraps=3, seed=6)
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert not np.array_equal(a.values, c.values)


def test_sampled_sets_are_exact_members_and_reproducible():
    x, y = _tiny(n=60)
    model = nn.Linear(3, 2).double()
    start = fit_optimum(model, (x, y), l2=1e-2)
    finder = SampledSets(model, start, epsilon=0.05, n_samples=50, l2=1e-2, n_repeats=2)
    found = finder(x, y, 0)
    assert found.importances.shape == (len(found.losses), 3)
    assert np.all(found.losses <= found.threshold + 1e-12)
    assert found.losses[0] == pytest.approx(found.losses.min())  # the optimum comes first
    again = finder(x, y, 0)
    np.testing.assert_array_equal(found.importances, again.importances)


def test_tree_sets_permute_a_binarized_feature_as_one():
    x, y = _tiny(n=80)
    finder = TreeSets(regularization=0.02, rashomon_multiplier=0.1, depth_budget=3,
                      thresholds=quantile_thresholds(x.numpy(), 2), n_repeats=2)
    found = finder(x, y, 0)
    assert found.importances.shape[1] == 3  # one importance per original feature, not per binary column
    assert np.all(found.losses <= found.threshold * (1 + 1e-9))
    assert found.importances[:, 0].min() > 0  # every good tree splits on x0, which decides y


def test_errors_say_what_was_wrong():
    with pytest.raises(ValueError, match="empty Rashomon set"):
        importance_distribution([np.ones((2, 3)), np.ones((0, 3))])
    with pytest.raises(ValueError, match="one D"):
        importance_distribution([np.ones((2, 3)), np.ones((2, 4))])
    with pytest.raises(ValueError, match="n_bootstraps must be >= 1; got 0"):
        bootstrap_indices(10, 0)
    with pytest.raises(ValueError, match="feature_names has 2 names for 3 features"):
        importance_distribution([np.ones((2, 3))], feature_names=["a", "b"])
    with pytest.raises(ValueError, match=r"x of shape \(N, D\)"):
        rashomon_importance_distribution((torch.ones(5), torch.ones(5)), lambda *a: None)
    with pytest.raises(ValueError, match="epsilon must be > 0; got 0"):
        PopulationSets([(nn.Linear(2, 2), {})], epsilon=0)
    with pytest.raises(ValueError, match=r"levels must be in \[0, 1\]"):
        importance_distribution([np.ones((2, 3))]).quantile([1.5])
    assert isinstance(BootstrapSet(np.zeros((1, 1)), np.zeros(1), 0.0), BootstrapSet)


# -- Chen's process: only X1..X4 decide the label (Donnelly et al. 2023, §5) ----------------------------------

RELEVANT, IRRELEVANT = [0, 1, 2, 3], [4, 5, 6, 7, 8, 9]


@pytest.fixture(scope="module")
def chen():
    ds = zdata.load({"name": "rid_chen", "options": {"n_samples": 800}, "test_size": 0.25})
    return ds.x_train.double(), ds.y_train, ds.feature_names


def test_chen_process_labels_follow_the_formula():
    ds = zdata.load({"name": "rid_chen", "options": {"n_samples": 400}})
    x, y = ds.x_train.double().numpy(), ds.y_train.numpy()
    assert np.all((x >= -2.5) & (x <= 2.5))
    score = -2 * np.sin(x[:, 0]) + np.maximum(x[:, 1], 0) + x[:, 2] + np.exp(-x[:, 3])
    np.testing.assert_array_equal(y, score >= 2.048)
    assert 0.3 < y.mean() < 0.7


@pytest.mark.filterwarnings("ignore:.*Hessian eigenvalues:RuntimeWarning")  # floored flat directions: not tested here
def test_chen_rid_of_logistic_sets_puts_irrelevant_features_at_zero(chen):
    x, y, names = chen
    torch.manual_seed(0)
    model = nn.Linear(x.shape[1], 2).double()
    start = fit_optimum(model, (x, y), l2=1e-3)
    finder = SampledSets(model, start, epsilon=0.05, n_samples=150, l2=1e-3, n_repeats=2)
    rid = rashomon_importance_distribution((x, y), finder, n_bootstraps=6, seed=0, feature_names=names)
    median, q95, q05 = rid.quantile([0.5])[0], rid.quantile([0.95])[0], rid.quantile([0.05])[0]
    assert q95[IRRELEVANT].max() < 0.05  # the noise features' mass sits at ~0 (a rise in cross-entropy)
    assert np.all(q05[RELEVANT] > np.median(median[IRRELEVANT]))
    assert median[RELEVANT].min() > 2 * median[IRRELEVANT].max()
    assert set(np.argsort(-rid.mean)[:4]) == set(RELEVANT)


def test_chen_rid_of_sparse_trees_never_uses_noise_features(chen):
    x, y, names = chen
    finder = TreeSets(regularization=0.01, rashomon_multiplier=0.05, depth_budget=3,
                      thresholds=quantile_thresholds(x.numpy(), 3), n_repeats=2)
    rid = rashomon_importance_distribution((x, y), finder, n_bootstraps=3, seed=0, feature_names=names)
    np.testing.assert_array_equal(rid.prob_above[IRRELEVANT], 0.0)  # no good tree splits on noise
    assert np.all(rid.quantile([0.95])[0][IRRELEVANT] == 0.0)
    # a depth-3 tree splits on at most 3 features, so not every tree can use all four relevant ones
    assert np.all(rid.mean[[0, 2, 3]] > 0.05)  # −2 sin(X1), X3 and exp(−X4) carry most of the score's variance
    assert rid.prob_above[3] == 1.0 and rid.quantile([0.05])[0][3] > 0.05
