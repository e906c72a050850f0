"""Rashomon set membership, curves and ratios (engine.probes.rashomon.sets)."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from engine.probes.rashomon import (
    multiplicity_curve,
    pattern_rashomon_ratio,
    rashomon_curve,
    rashomon_ratio,
    rashomon_ratio_from_losses,
    rashomon_set,
    rashomon_threshold,
    ridge_rashomon_ratio,
)

LOSSES = np.array([0.30, 0.20, 0.21, 0.25, 0.40])


def test_relative_and_absolute_membership_known_values():
    rel = rashomon_set(LOSSES, epsilon=0.1, mode="relative")  # threshold 0.22
    assert rel.threshold == pytest.approx(0.22)
    assert rel.indices.tolist() == [1, 2]
    assert "relative" in rel.label
    ab = rashomon_set(LOSSES, epsilon=0.1, mode="absolute")  # threshold 0.30
    assert ab.indices.tolist() == [1, 2, 3, 0]  # sorted by loss
    assert ab.members.tolist() == [True, True, True, True, False]
    assert ab.size == 4 and ab.fraction == pytest.approx(0.8)
    assert "absolute" in ab.label


def test_given_reference_loss():
    s = rashomon_set(LOSSES, epsilon=0.05, mode="absolute", reference=0.18)
    assert s.indices.tolist() == [1, 2]
    assert s.reference_loss == 0.18


@pytest.mark.parametrize("mode", ["relative", "absolute"])
def test_set_only_grows_with_epsilon(mode):
    losses = np.random.default_rng(0).gamma(2.0, 0.1, size=500)
    eps = np.linspace(0, 2, 41)
    prev = np.zeros(500, bool)
    for e in eps:
        cur = rashomon_set(losses, epsilon=e, mode=mode).members
        assert np.all(cur >= prev)
        prev = cur
    curve = rashomon_curve(losses, eps, mode=mode)
    assert np.all(np.diff(curve.sizes) >= 0)
    assert curve.sizes.tolist() == [rashomon_set(losses, epsilon=e, mode=mode).size for e in eps]


def test_ambiguity_and_discrepancy_never_fall_as_epsilon_grows():
    rng = np.random.default_rng(1)
    losses = rng.uniform(0.1, 0.5, size=200)
    preds = rng.integers(0, 2, size=(200, 60))
    curve = multiplicity_curve(losses, preds, np.linspace(0, 3, 31), mode="relative")
    assert np.all(np.diff(curve.ambiguity) >= 0)
    assert np.all(np.diff(curve.discrepancy) >= 0)
    assert curve.ambiguity[0] == 0.0  # only the reference model at ε = 0


def test_errors_are_explicit():
    with pytest.raises(ValueError, match="mode must be 'relative' or 'absolute'; got 'rel'"):
        rashomon_set(LOSSES, epsilon=0.1, mode="rel")
    with pytest.raises(ValueError, match="epsilon must be >= 0; got -1"):
        rashomon_set(LOSSES, epsilon=-1)
    with pytest.raises(ValueError, match="1 non-finite values"):
        rashomon_set([0.1, float("nan")], epsilon=0.1)
    with pytest.raises(ValueError, match="relative ε needs a non-negative reference loss"):
        rashomon_threshold(-1.0, 0.1, "relative")
    with pytest.raises(ValueError, match="reference must be 'best' or a loss value; got 'worst'"):
        rashomon_set(LOSSES, epsilon=0.1, reference="worst")


def test_monte_carlo_ratio_and_pattern_ratio_known_values():
    r = rashomon_ratio_from_losses([0.1, 0.2, 0.3, 0.9], epsilon=0.15, mode="absolute")
    assert r.ratio == 0.5 and r.standard_error == pytest.approx(math.sqrt(0.25 / 4))
    preds = np.array([[0, 1], [0, 1], [1, 1], [1, 0], [0, 0]])
    pr = pattern_rashomon_ratio(preds, [0.1, 0.1, 0.15, 0.5, 0.6], epsilon=0.1)
    assert (pr.n_members, pr.n_samples) == (2, 4) and pr.ratio == 0.5


def _ridge_problem(p=2, n=200, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, p, generator=gen, dtype=torch.float64)
    noise = 0.3 * torch.randn(n, generator=gen, dtype=torch.float64)
    y = x @ torch.tensor([0.5, -0.3][:p], dtype=torch.float64) + noise
    return x, y.unsqueeze(1)


def test_monte_carlo_ratio_matches_analytic_ridge_volume():
    x, y = _ridge_problem()
    alpha, eps, hw = 0.1, 0.05, 1.0
    analytic = ridge_rashomon_ratio(x.numpy(), y.numpy(), alpha=alpha, epsilon=eps, half_width=hw)
    model = nn.Linear(2, 1, bias=False).double()
    a = x.T @ x / len(x) + alpha * torch.eye(2, dtype=torch.float64)
    theta = torch.linalg.solve(a, x.T @ y / len(x)).T  # (1, 2)
    best = float(((x @ theta.T - y) ** 2).mean() + alpha * (theta ** 2).sum())
    mc = rashomon_ratio(model, {"weight": theta}, (x, y), epsilon=eps, half_width=hw,
                        optimum_loss=best, l2=alpha, n_samples=20_000, seed=0)
    assert analytic.threshold == pytest.approx(best + eps)
    assert abs(mc.ratio - analytic.ratio) <= 3 * mc.standard_error
    assert mc.n_members > 100  # the check has power


def test_ridge_ratio_refuses_ellipsoid_outside_box():
    x, y = _ridge_problem()
    with pytest.raises(ValueError, match="leaves the box"):
        ridge_rashomon_ratio(x.numpy(), y.numpy(), alpha=0.1, epsilon=5.0, half_width=0.5)
