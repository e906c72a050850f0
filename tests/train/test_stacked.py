"""K runs at once: the stacked MLP forward, loss and accuracy equal the per-run module, loss and argmax."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.func import stack_module_state

from engine import nets
from engine.config import ArchSpec, DatasetSpec, OptimSpec, TrainSpec
from engine.train import loss_fn, train_population, train_run
from engine.train.losses import stacked_accuracy, stacked_loss_fn
from engine.train.stacked import _vmap_forward, stacked_forward

EPS32 = torch.finfo(torch.float32).eps
EPS64 = torch.finfo(torch.float64).eps


def _logits(layout: str, K=3, N=50, C=10, scale=6.0):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(K, C, N, generator=g) * scale  # class-major memory, as the stacked MLP returns it
    z = z.transpose(1, 2) if layout == "class_major" else z.transpose(1, 2).contiguous()  # (K, N, C)
    return z, torch.randint(0, C, (K, N), generator=g)


@pytest.mark.parametrize("layout", ["contiguous", "class_major"])
def test_stacked_cross_entropy_and_its_gradient_equal_f_cross_entropy(layout):
    z, y = _logits(layout)
    K, N, C = z.shape
    leaf = z.detach().requires_grad_(True)
    losses = stacked_loss_fn("cross_entropy", "classification")(leaf, y)  # (K,)
    (grad,) = torch.autograd.grad(losses.sum(), leaf)
    ref = z.detach().clone().requires_grad_(True)
    expected = torch.stack([F.cross_entropy(ref[k], y[k]) for k in range(K)])
    (expected_grad,) = torch.autograd.grad(expected.sum(), ref)
    # A sample's loss lse - z_y and log_softmax's -(z_y - max - log sum exp) round different
    # sequences of ~4 operations on numbers up to max|z| + log C, then the mean adds log2(N)
    # rounding steps; the gradient exp(z - lse) - onehot inherits the error of z - lse
    # (<= 3 roundings of that size) plus exp's own, divided by N.
    size = float(z.abs().max()) + math.log(C)
    torch.testing.assert_close(losses, expected.detach(), rtol=0, atol=(4 + math.log2(N)) * EPS32 * size)
    torch.testing.assert_close(grad, expected_grad, rtol=0, atol=4 * EPS32 * (size + 1) / N)


def _confident_logits(K=2, N=64, C=10):
    """Logits near 1000 with the target's 12 above the rest: each loss is log(1 + sum_j e^(z_j - z_y)),
    about 5e-5, below half a float32 unit of 1000 (3e-5 to 6e-5)."""
    g = torch.Generator().manual_seed(4)
    z = 1000 + torch.rand(K, N, C, generator=g)
    y = torch.randint(0, C, (K, N), generator=g)
    z.scatter_(-1, y[..., None], z.amax(-1, keepdim=True) + 12)
    exact = torch.log1p((z.double() - z.double().gather(-1, y[..., None])).exp().sum(-1) - 1)  # (K, N)
    return z, y, exact


def test_stacked_cross_entropy_is_accurate_for_confident_large_logits():
    """As F.cross_entropy (log_softmax subtracts the maximum first): the differences z_j - z_y are
    exact (Sterbenz: within a factor 2 of each other), their C exponentials and sum round with
    relative error (C + 2) eps, and the logarithm of a sum near 1 turns that into an absolute error;
    the mean adds log2(N) roundings of the loss's size. ``logsumexp - z_y`` instead rounds
    1000 + 5e-5 to float32 first, an error of up to half a unit of 1000 in every sample's loss."""
    z, y, exact = _confident_logits()
    got = stacked_loss_fn("cross_entropy", "classification")(z, y)
    reference = torch.stack([F.cross_entropy(z[k], y[k]) for k in range(len(z))])
    tol = (10 + 2 + math.log2(64)) * EPS32
    torch.testing.assert_close(reference.double(), exact.mean(1), rtol=0, atol=tol)
    torch.testing.assert_close(got.double(), exact.mean(1), rtol=0, atol=tol)


def test_stacked_token_cross_entropy_is_each_runs_token_loss():
    g = torch.Generator().manual_seed(1)
    z, y = torch.randn(2, 4, 7, 11, generator=g) * 3, torch.randint(0, 11, (2, 4, 7), generator=g)
    got = stacked_loss_fn("token_cross_entropy", "sequence")(z, y)
    per_run = torch.stack([loss_fn("token_cross_entropy", "sequence")(z[k], y[k]) for k in range(2)])
    # as above, with N = 28 positions
    torch.testing.assert_close(got, per_run, rtol=0, atol=(4 + math.log2(28)) * EPS32 * (float(z.abs().max()) + 3))


def test_stacked_losses_keep_the_per_run_errors_and_other_losses():
    z, y = _logits("contiguous")
    with pytest.raises(ValueError, match=r"loss 'cross_entropy' takes logits \(N, C\) and class ids \(N,\)"):
        stacked_loss_fn("cross_entropy", "classification")(z[..., None], y)
    t = torch.randn(3, 50, 10)
    torch.testing.assert_close(stacked_loss_fn("mse", "regression")(z, t),
                               torch.stack([F.mse_loss(z[k], t[k]) for k in range(3)]))


@pytest.mark.parametrize("layout", ["contiguous", "class_major"])
def test_stacked_accuracy_is_argmax_accuracy_ties_included(layout):
    z, y = _logits(layout, N=400, scale=1.0)
    z = z.round()  # values in {-3, ..., 3}: most rows have tied maxima, where argmax takes the first
    expected = (z.argmax(-1) == y).float().mean(1)
    assert torch.equal(stacked_accuracy(z, y), expected)


@pytest.mark.parametrize("layout", ["contiguous", "class_major"])
def test_stacked_accuracy_is_argmax_accuracy_with_nan_and_inf(layout):
    """``argmax`` takes a row's first NaN (NaN counts as the largest), else its first maximum, +inf
    included; a row of -inf is class 0. Exact: both are comparisons, no rounding. Many small random
    cases, NaN / +inf / -inf injected at random and ties everywhere (scores in {-2, ..., 2}); the
    sequence shape (K, N, T, C) too."""
    for seed in range(200):
        g = torch.Generator().manual_seed(seed)
        K, N, C = 1 + seed % 4, 1 + seed % 37, 2 + seed % 11
        shape = (K, N, 3, C) if seed % 5 == 0 else (K, N, C)
        z = torch.randint(-2, 3, shape, generator=g).float()
        u = torch.rand(shape, generator=g)
        rate = (0.0, 0.02, 0.1, 0.3)[seed % 4]  # seed % 4 == 0: no NaN at all (the path without the NaN pass)
        z[u < rate] = math.nan
        z[(u >= 0.3) & (u < 0.4)] = math.inf
        z[(u >= 0.4) & (u < 0.5)] = -math.inf
        z[..., 0, :][u[..., 0, :] < 0.5] = -math.inf  # a few rows (almost) all -inf
        if layout == "class_major":
            z = z.movedim(-1, 1).contiguous().movedim(1, -1)  # (K, ..., C) viewed over class-major memory
        y = torch.randint(0, C, shape[:-1], generator=g)
        expected = (z.argmax(-1) == y).float().flatten(1).mean(1)
        assert torch.equal(stacked_accuracy(z, y), expected), seed


def _population(arch: ArchSpec, K=3, dtype=torch.float64):
    models = [nets.build(arch, (2,), 3, vocab_size=None, seed=s).to(dtype) for s in range(K)]
    params, buffers = stack_module_state(models)
    return models[0], {k: v.detach().requires_grad_(True) for k, v in params.items()}, buffers


@pytest.mark.parametrize("activation", ["relu", "tanh", "gelu"])
def test_stacked_mlp_forward_and_gradients_equal_vmap_of_the_module(activation):
    arch = ArchSpec(name="mlp", width=16, depth=3, options={"activation": activation})
    model, params, buffers = _population(arch)
    forward = stacked_forward(model)
    assert forward.func.__name__ == "_mlp_forward"  # the batched-product path, not vmap
    x = torch.randn(3, 20, 2, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got, ref = forward(params, buffers, x), _vmap_forward(model, params, buffers, x)
    g_got = torch.autograd.grad(got.square().sum(), list(params.values()))
    g_ref = torch.autograd.grad(ref.square().sum(), list(params.values()))
    # Same products, summed in another order: per layer ~fan-in roundings of float64 on terms
    # of size O(1) (unit-scale inputs, default init); 4 layers, forward and backward.
    scale = float(ref.detach().abs().max()) + 1
    tol = 4 * 2 * 17 * EPS64 * scale
    torch.testing.assert_close(got, ref, rtol=0, atol=tol)
    for a, b in zip(g_got, g_ref):
        torch.testing.assert_close(a, b, rtol=0, atol=tol * scale)


@pytest.mark.parametrize("options", [{"batchnorm": True}])
def test_other_mlps_run_under_vmap(options):
    model, params, buffers = _population(ArchSpec(name="mlp", width=8, depth=2, options=options))
    assert stacked_forward(model).func.__name__ == "_vmap_forward"


def test_a_tanh_mlp_population_equals_its_runs_trained_alone():
    specs = [TrainSpec(dataset=DatasetSpec(name="moons"), seed=s, batch_size=32, steps=20, checkpoints=[20],
                       arch=ArchSpec(name="mlp", width=16, depth=2, options={"activation": "tanh"}),
                       optim=OptimSpec(name="momentum", lr=0.05, weight_decay=1e-3)) for s in (0, 1)]
    together = train_population(specs)
    for spec, pop in zip(specs, together):
        alone = train_run(spec)
        for key, value in alone.metrics.items():
            assert pop.metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
