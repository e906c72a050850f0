"""Population training's contract: every architecture runs under functional_call + vmap
over stacked parameters and buffers, and agrees with a per-model loop."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, stack_module_state, vmap

K = 3
ATOL = 1e-5


def _population(case):
    models = [case.build(seed=s) for s in range(K)]
    for i, model in enumerate(models):  # move BatchNorm running stats off their init
        model(case.inputs(batch=8, seed=50 + i))
    params, buffers = stack_module_state(models)  # each (K, ...)
    base = copy.deepcopy(models[0]).to("meta")
    return models, params, buffers, base


def _inputs(case, shared: bool):
    if shared:
        return case.inputs(batch=6, seed=7), None
    return torch.stack([case.inputs(batch=6, seed=10 + i) for i in range(K)]), 0  # (K, B, ...)


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("shared", [True, False], ids=["shared-batch", "batch-per-model"])
def test_vmap_forward_matches_per_model_loop(case, mode, shared):
    models, params, buffers, base = _population(case)
    for model in (*models, base):
        model.train(mode == "train")
    x, x_dim = _inputs(case, shared)

    def forward(p, b, xb):
        return functional_call(base, (p, b), (xb,))

    out = vmap(forward, in_dims=(0, 0, x_dim))(params, buffers, x)  # (K, B, n_outputs)
    expected = torch.stack([m(x if shared else x[i]) for i, m in enumerate(models)])
    torch.testing.assert_close(out, expected, atol=ATOL, rtol=ATOL)
    # train-mode BatchNorm updates the stacked running statistics in place, model by model
    for key, stacked in buffers.items():
        torch.testing.assert_close(stacked, torch.stack([m.get_buffer(key) for m in models]), atol=ATOL, rtol=ATOL)


def test_vmap_grad_matches_per_model_grads(case):
    models, params, buffers, base = _population(case)
    x, _ = _inputs(case, shared=False)
    y = torch.randint(0, case.n_outputs, (K, x.shape[1]), generator=torch.Generator().manual_seed(0))

    def loss(p, b, xb, yb):
        return F.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    grads = vmap(grad(loss))(params, buffers, x, y)
    for i, model in enumerate(models):
        names, tensors = zip(*model.named_parameters())
        expected = torch.autograd.grad(F.cross_entropy(model(x[i]), y[i]), tensors)
        for name, g in zip(names, expected):
            torch.testing.assert_close(grads[name][i], g, atol=ATOL, rtol=ATOL)
