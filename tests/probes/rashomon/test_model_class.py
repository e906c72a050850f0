"""The tabular model class and its regularised optimum (engine.probes.rashomon.model_class)."""

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from engine.probes.rashomon import fit_optimum, model_class


def _data(n=200, d=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * x[:, 1] + 0.3 * torch.randn(n, generator=gen, dtype=torch.float64) > 0).long()
    return x, y


def test_model_class_is_seeded_and_leaves_the_global_generator_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = model_class("mlp", 4, 3, width=5, seed=7)
    after = torch.rand(3)
    b = model_class("mlp", 4, 3, width=5, seed=7)
    assert torch.equal(before, after)  # the global RNG did not move
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    c = model_class("mlp", 4, 3, width=5, seed=8)
    assert not torch.equal(a[0].weight, c[0].weight)
    assert [tuple(p.shape) for p in a.parameters()] == [(5, 4), (5,), (3, 5), (3,)]
    assert isinstance(a[1], torch.nn.Tanh)
    assert tuple(model_class("logistic", 4, 3).weight.shape) == (3, 4)


def test_model_class_names_the_choices():
    with pytest.raises(ValueError, match=r"model must be 'logistic' or 'mlp'; got 'svm'"):
        model_class("svm", 4, 2)


@pytest.mark.parametrize("kind", ["logistic", "mlp"])
def test_optimum_is_stationary_for_the_penalised_objective(kind):
    x, y = _data()
    model = model_class(kind, 4, 2, seed=0).double()
    start = {k: v.detach().clone() for k, v in model.named_parameters()}
    l2 = 1e-2
    theta = fit_optimum(model, (x, y), l2=l2, steps=500)
    assert all(v.dtype == torch.float64 and not v.requires_grad for v in theta.values())
    assert all(torch.equal(v, start[k]) for k, v in model.named_parameters())  # the module is not mutated
    params = {k: v.clone().requires_grad_(True) for k, v in theta.items()}
    loss = F.cross_entropy(functional_call(model, params, (x,)), y) + l2 * sum(v.pow(2).sum() for v in params.values())
    grads = torch.autograd.grad(loss, list(params.values()))
    assert max(g.abs().max().item() for g in grads) < 1e-6
    start_loss = F.cross_entropy(model(x), y) + l2 * sum(v.pow(2).sum() for v in start.values())
    assert loss.item() < start_loss.item()
