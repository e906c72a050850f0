"""Hessian-ellipsoid sampling of a model class's Rashomon set (engine.probes.rashomon.sampling)."""

import functools

import numpy as np
import pytest
import torch
from torch import nn

from engine.probes.rashomon import flat_losses, sample_rashomon_set


@functools.cache
def _logistic_optimum(seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(120, 3, generator=gen)
    y = ((x @ torch.tensor([1.5, -1.0, 0.0]) + 0.5 * torch.randn(120, generator=gen)) > 0).long()
    model = nn.Linear(3, 2)
    for _ in range(300):  # plain gradient descent: torch.optim's first import costs seconds
        loss = nn.functional.cross_entropy(model(x), y) + 1e-3 * sum((p ** 2).sum() for p in model.parameters())
        grads = torch.autograd.grad(loss, list(model.parameters()))
        with torch.no_grad():
            for p, g in zip(model.parameters(), grads):
                p -= 1.0 * g
    return model, {k: v.detach().clone() for k, v in model.named_parameters()}, (x, y)


@pytest.mark.parametrize("mode,eps", [("relative", 0.05), ("absolute", 0.02)])
def test_members_satisfy_the_condition_on_the_true_loss(mode, eps):
    model, params, data = _logistic_optimum()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    s = sample_rashomon_set(model, params, data, epsilon=eps, mode=mode, n_samples=400,
                            seed=0, l2=1e-3)
    assert 0 < s.acceptance_rate <= 1
    assert s.thetas.shape == (int(s.accepted.sum()), 8)
    # recompute the members' losses from scratch
    th = torch.as_tensor(s.thetas)
    true = flat_losses(model, th, s.names, s.shapes, (data[0].double(), data[1]), l2=1e-3).numpy()
    assert np.all(true <= s.threshold + 1e-12)
    np.testing.assert_allclose(true, s.losses, rtol=1e-10)
    expected = s.optimum_loss * (1 + eps) if mode == "relative" else s.optimum_loss + eps
    assert s.threshold == pytest.approx(expected)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())  # not mutated


def test_sampling_is_seeded_and_stacked_params_round_trip():
    model, params, data = _logistic_optimum()
    a = sample_rashomon_set(model, params, data, epsilon=0.05, n_samples=100, seed=3, l2=1e-3)
    b = sample_rashomon_set(model, params, data, epsilon=0.05, n_samples=100, seed=3, l2=1e-3)
    np.testing.assert_array_equal(a.thetas, b.thetas)
    stacked = a.stacked_params()
    assert stacked["weight"].shape == (a.thetas.shape[0], 2, 3)


def test_small_mlp_flat_directions_warn():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
    x = torch.randn(50, 2)
    y = (x[:, 0] > 0).long()
    params = dict(model.named_parameters())
    with pytest.warns(RuntimeWarning, match="Hessian eigenvalues are below"):
        s = sample_rashomon_set(model, params, (x, y), epsilon=0.1, n_samples=50, seed=0)
    assert s.n_floored > 0 and np.all(s.losses <= s.threshold)


def test_sampling_errors():
    model, params, data = _logistic_optimum()
    with pytest.raises(ValueError, match="more than max_params=4"):
        sample_rashomon_set(model, params, data, epsilon=0.1, max_params=4)
    with pytest.raises(ValueError, match="n_samples must be >= 1; got 0"):
        sample_rashomon_set(model, params, data, epsilon=0.1, n_samples=0)


class _ScalarBias(nn.Module):
    """Logistic regression with a 0-d bias parameter: logits [0, w·x + b]."""

    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([1.0, -1.0, 0.0]))
        self.bias = nn.Parameter(torch.tensor(0.1))

    def forward(self, x):
        z = x @ self.weight + self.bias
        return torch.stack([torch.zeros_like(z), z], -1)


def test_scalar_parameters_and_error_metric():
    _, _, (x, y) = _logistic_optimum()
    model = _ScalarBias()
    s = sample_rashomon_set(model, dict(model.named_parameters()), (x, y), epsilon=0.2, n_samples=50, l2=1e-2)
    assert s.stacked_params()["bias"].shape == (s.thetas.shape[0],)
    theta = torch.tensor([[1.0, -1.0, 0.0, 0.1]], dtype=torch.float64)
    err = flat_losses(model, theta, s.names, s.shapes, (x.double(), y), metric="error")
    assert float(err) == pytest.approx(float((model(x).argmax(-1) != y).float().mean()))
    with pytest.raises(ValueError, match="metric must be 'loss' or 'error'; got 'auc'"):
        flat_losses(model, theta, s.names, s.shapes, (x.double(), y), metric="auc")
