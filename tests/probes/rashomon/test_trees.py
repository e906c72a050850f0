"""Sparse-tree Rashomon sets through treefarms (engine.probes.rashomon.trees).

Reference figures (treefarms 0.2.4) are in assets/datasets/tabular/README.md.
"""

from functools import cache

import numpy as np
import pytest

from engine.data import load
from engine.probes.rashomon._tree_decode import decode_model_set
from engine.probes.rashomon.trees import _recount, predict_trees, rashomon_trees, tree_rules, tree_to_dict

pytest.importorskip("treefarms")


@cache
def _full(name):
    """All rows of a bundled binarized set (train and test splits together)."""
    ds = load(name)
    x = np.concatenate([ds.x_train.numpy(), ds.x_test.numpy()]).astype(np.uint8)
    y = np.concatenate([ds.y_train.numpy(), ds.y_test.numpy()])
    return x, y, tuple(ds.feature_names)


@cache
def _set(name, reg, mult, depth=None):
    x, y, names = _full(name)
    return rashomon_trees(x, y, regularization=reg, rashomon_multiplier=mult,
                          depth_budget=depth, feature_names=names)


def _optimum_by_dynamic_programming(x, y, reg, max_depth):
    """Slow obvious reference: exhaustive search of trees of depth <= max_depth."""
    rows, inv = np.unique(x, axis=0, return_inverse=True)
    counts = np.stack([np.bincount(inv.ravel(), weights=(y == k), minlength=len(rows)) for k in (0, 1)], 1)
    n, memo = len(y), {}

    def best(mask, depth):
        key = (mask.tobytes(), depth)
        if key not in memo:
            c = counts[mask].sum(0)
            value = (c.sum() - c.max()) / n + reg
            if depth > 0:
                for f in range(x.shape[1]):
                    on = mask & (rows[:, f] == 1)
                    off = mask & (rows[:, f] == 0)
                    if on.any() and off.any():
                        value = min(value, best(on, depth - 1) + best(off, depth - 1))
            memo[key] = value
        return memo[key]

    return best(np.ones(len(rows), bool), max_depth)


@pytest.mark.parametrize("name,reg,mult,depth,expected", [
    ("monk1", 0.03, 0.1, None, 56),
    ("monk1", 0.01, 0.05, None, 24),
    ("compas", 0.01, 0.05, 4, 381),
])
def test_sizes_match_the_reference_figures(name, reg, mult, depth, expected):
    s = _set(name, reg, mult, depth)
    assert s.size == expected and s.n_dropped == 0 and s.n_reported == expected
    assert np.all(s.objective <= s.bound + 1e-12) and np.all(np.diff(s.objective) >= 0)
    assert s.bound == pytest.approx((1 + mult) * s.optimum)
    if depth is not None:
        assert s.depth.max() <= depth - 1  # GOSDT counts the root as depth 1
    if (name, reg) == ("monk1", 0.01):
        np.testing.assert_allclose(s.objective, 0.08, atol=1e-12)  # all 24 at the optimum
    if name == "compas":
        assert (round(s.objective.min(), 4), round(s.objective.max(), 4)) == (0.3749, 0.3936)


@pytest.mark.parametrize("name,reg,mult,depth", [("monk1", 0.03, 0.1, 4), ("compas", 0.01, 0.05, 4)])
def test_best_objective_matches_an_exhaustive_optimum(name, reg, mult, depth):
    x, y, _ = _full(name)
    s = _set(name, reg, mult, depth)
    assert s.optimum == pytest.approx(_optimum_by_dynamic_programming(x, y, reg, depth - 1), abs=1e-9)


@pytest.mark.parametrize("key", [("monk1", 0.03, 0.1, None), ("compas", 0.01, 0.05, 4)])
def test_accuracy_recomputed_from_rules_equals_reported(key):
    s = _set(*key)
    x, y, names = _full(key[0])
    np.testing.assert_allclose(s.accuracy, s.reported_accuracy, atol=1e-12)
    np.testing.assert_allclose(s.objective, s.reported_objective, atol=1e-9)
    np.testing.assert_allclose(s.objective, 1 - s.accuracy + key[1] * s.n_leaves, atol=1e-12)
    for t in range(0, s.size, max(1, s.size // 15)):  # explicit rule evaluation, tree by tree
        pred = np.full(len(y), -1)
        rules = tree_rules(s, t)
        assert len(rules) == s.n_leaves[t]
        for conditions, label in rules:
            hit = np.ones(len(y), bool)
            for feat, value in conditions:
                hit &= x[:, names.index(feat)] == value
            assert np.all(pred[hit] == -1)  # leaves partition the data
            pred[hit] = label
        assert np.mean(pred == y) == pytest.approx(s.accuracy[t], abs=1e-12)
        assert set(np.flatnonzero(s.features_used[t])) == {names.index(f) for c, _ in rules for f, _ in c}


def test_predict_trees_vectorized_equals_dict_walk():
    s = _set("monk1", 0.03, 0.1, None)
    x, _, names = _full("monk1")
    preds = predict_trees(s, x[:40])
    assert preds.shape == (s.size, 40)

    def walk(node, row):
        while "prediction" not in node:
            node = node["true"] if row[node["feature_index"]] == 1 else node["false"]
        return node["prediction"]

    for t in (0, s.size // 2, s.size - 1):
        d = tree_to_dict(s, t)
        assert preds[t].tolist() == [walk(d, row) for row in x[:40]]
    np.testing.assert_array_equal(predict_trees(s, x[:40], indices=[3, 1]), preds[[3, 1]])


def _raw(regularization=0.1):
    """A hand-made treefarms result over 2 features, 4 samples: a leaf set and a split set."""
    leaf0 = {"count": 1, "terminal": True, "prediction": 0, "mapping": {}}
    leaf1 = {"count": 1, "terminal": True, "prediction": 1, "mapping": {}}
    split = {"count": 2, "terminal": False, "prediction": 0, "mapping": {"0": [[1, 0]], "1": [[1, 0]]}}
    return {"metadata": {"dataset_size": 4, "regularization": regularization},
            "storage": [leaf0, leaf1, split],
            "available_metric_values": {"metric_pointers": [2, 0],
                                        "metric_values": [[0.2, 0, 2], [0.6, 2, 1]]}}


def test_recount_drops_trees_above_the_bound():
    x = np.array([[1, 0], [1, 1], [0, 0], [0, 1]], np.uint8)
    y = np.array([1, 1, 0, 0])
    tables = decode_model_set(_raw(), np.array([0, 1]), n_features=2)
    s = _recount(tables, x, y, np.array([0, 1]), ("a", "b"), 0.1, 0.5, None, 3, False)
    # split on a: error 0 + 0.2; split on b: error 0.5 + 0.2; single leaf: 0.5 + 0.1
    assert s.optimum == pytest.approx(0.2) and s.bound == pytest.approx(0.3)
    assert s.size == 1 and s.n_dropped == 2
    assert tree_rules(s, 0) == [((("a", 1),), 1), ((("a", 0),), 0)]


def test_errors_are_actionable():
    x, y, _ = _full("monk1")
    with pytest.raises(ValueError, match="more than max_trees=10; raise regularization"):
        rashomon_trees(x, y, regularization=0.03, rashomon_multiplier=0.1, max_trees=10)
    with pytest.raises(ValueError, match="only 0/1 values"):
        rashomon_trees(x * 2, y, regularization=0.03, rashomon_multiplier=0.1)
    with pytest.raises(ValueError, match=r"regularization must be in \(0, 1\); got 0"):
        rashomon_trees(x, y, regularization=0, rashomon_multiplier=0.1)
    with pytest.raises(ValueError, match="depth_budget must be >= 1"):
        rashomon_trees(x, y, regularization=0.1, rashomon_multiplier=0.1, depth_budget=0)


@pytest.mark.slow
def test_monk3_recount_reproduces_the_measured_drop():
    s = _set("monk3", 0.01, 0.05)
    assert (s.n_reported, s.size) == (2208, 1592)


def test_progress_is_reported_in_order(capfd):
    x, y, _ = _full("monk1")
    seen = []
    s = rashomon_trees(x, y, regularization=0.05, rashomon_multiplier=0.05, depth_budget=3,
                       progress=lambda fraction, message: seen.append((fraction, message)))
    assert [f for f, _ in seen] == sorted(f for f, _ in seen) and len(seen) == 3
    assert f"{s.n_reported:,} trees" in seen[1][1]
    assert "Finding Optimal Objective" not in capfd.readouterr().out  # libgosdt's prints are silenced
