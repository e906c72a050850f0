"""The warm-started exact assignment solver against brute force and scipy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import engine.probes.connectivity.lap as lap
from engine.probes.connectivity import WarmAssignments, solve_assignment


def _scipy(score):
    return linear_sum_assignment(score, maximize=True)[1]


def test_small_problems_match_brute_force():
    rng = np.random.default_rng(0)
    for n in range(1, 7):
        for _ in range(10):
            score = rng.standard_normal((n, n))
            best = max(itertools.permutations(range(n)), key=lambda p: score[np.arange(n), list(p)].sum())
            np.testing.assert_array_equal(solve_assignment(score), best)


@pytest.mark.parametrize("kind", ["gaussian", "low rank + noise", "integers"])
def test_warm_sequences_match_scipy_at_every_solve(kind):
    """Like weight matching: each key's matrix drifts a little between solves; every answer is scipy's."""
    rng = np.random.default_rng(1)
    n = 120
    if kind == "gaussian":
        base = rng.standard_normal((n, n))
    elif kind == "low rank + noise":  # trained networks' scores: a few strong directions, tiny gaps
        base = rng.standard_normal((n, 3)) @ rng.standard_normal((3, n)) + 1e-3 * rng.standard_normal((n, n))
    else:
        base = rng.integers(0, 1000, (n, n)).astype(float)
    solver = WarmAssignments()
    for step in range(12):
        for key in ("a", "b"):
            score = base + (0.05 * step) * rng.standard_normal((n, n)) * (key == "b")
            if kind == "integers":
                score = np.round(score) + rng.random((n, n)) * 1e-3  # unique optimum
            p = solver.maximize(key, score)
            np.testing.assert_array_equal(p, _scipy(score))
    assert solver.fallbacks == 0 and set(solver.duals) == {"a", "b"}


def test_ties_give_an_optimal_permutation():
    score = np.ones((6, 6))
    score[np.arange(6), np.arange(6)[::-1]] = 2.0
    p = solve_assignment(score)
    assert sorted(p) == list(range(6)) and score[np.arange(6), p].sum() == 12.0
    p = solve_assignment(np.zeros((5, 5)))  # every permutation is optimal
    assert sorted(p) == list(range(5))


def test_a_failed_certificate_falls_back_to_scipy(monkeypatch):
    rng = np.random.default_rng(2)
    score = rng.standard_normal((30, 30))
    reduce_rows, lapjv, _ = lap._kernels()
    monkeypatch.setattr(lap, "_kernels", lambda: (reduce_rows, lapjv, lambda *args: False))
    solver = WarmAssignments()
    np.testing.assert_array_equal(solver.maximize("k", score), _scipy(score))
    assert solver.fallbacks == 1 and "k" not in solver.duals  # no duals kept from a failed solve


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match=r"must be square; got shape \(2, 3\)"):
        solve_assignment(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="NaN or infinite"):
        solve_assignment(np.array([[0.0, np.nan], [1.0, 0.0]]))
    assert solve_assignment(np.zeros((0, 0))).shape == (0,)
