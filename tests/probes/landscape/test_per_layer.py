"""Per-block Hessian curvature against the dense Hessian's diagonal blocks on a tiny model."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from engine.probes.core import ParamLayout
from engine.probes.landscape import (
    PerLayerHessian,
    hessian_operator,
    parameter_blocks,
    per_layer_hessian,
    per_layer_hessian_over_training,
)


def _problem(seed=0, n=64):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 3))
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(n, 5, generator=g)
    y = torch.randint(0, 3, (n,), generator=g)
    return model, dict(model.named_parameters()), (x, y)


def _dense_hessian(model, params, data):
    """The whole Hessian in float64 by autograd: the reference the blocks are cut from."""
    layout = ParamLayout.from_module(model)
    theta = layout.flatten(params).double()
    x, y = data
    model = copy.deepcopy(model).double()

    def loss(t):
        return F.cross_entropy(functional_call(model, layout.unflatten(t), (x.double(),)), y)

    return torch.autograd.functional.hessian(loss, theta)


@pytest.fixture(scope="module")
def tiny():
    model, params, data = _problem()
    return model, params, data, _dense_hessian(model, params, data)


def _block(model, h, names):
    layout = ParamLayout.from_module(model)
    idx = torch.cat([torch.arange(layout.slice(n).start, layout.slice(n).stop) for n in names])
    return h[idx][:, idx], idx


def _float32_block(model, params, data, idx):
    """The block as the float32 Hessian-vector product computes it (the operator Lanczos really sees)."""
    op = hessian_operator(model, params, data)
    full = torch.zeros(len(idx), op.n_params)
    full[torch.arange(len(idx)), idx] = 1.0
    return op(full)[:, idx].double()


def test_parameter_blocks_group_by_module_prefix():
    names = ["layers.0.linear.weight", "layers.0.linear.bias", "layers.0.norm.weight", "layers.1.linear.weight",
             "head.weight", "head.bias", "scale"]
    assert list(parameter_blocks(names, "tensor")) == names
    assert parameter_blocks(names, "layer") == {
        "layers.0.linear": names[:2], "layers.0.norm": [names[2]], "layers.1.linear": [names[3]],
        "head": names[4:6], "scale": ["scale"]}
    assert parameter_blocks(names, "block") == {
        "layers.0": names[:3], "layers.1": [names[3]], "head": names[4:6], "scale": ["scale"]}
    with pytest.raises(ValueError, match=r"level must be one of \['tensor', 'layer', 'block'\]; got 'module'"):
        parameter_blocks(names, "module")


@pytest.mark.parametrize("level", ["tensor", "layer"])
def test_top_eigenvalue_and_exact_trace_match_the_dense_blocks(tiny, level):
    model, params, data, h = tiny
    res = per_layer_hessian(model, params, data, level=level, n_probes=64, max_iter=64)
    groups = parameter_blocks(list(params), level)
    assert res.blocks == tuple(groups) and res.top.shape == (1, len(groups))
    for b, names in enumerate(groups.values()):
        dense, idx = _block(model, h, names)
        f32 = _float32_block(model, params, data, idx)
        # Lanczos sees a float32 product: Weyl moves each eigenvalue by at most that operator's distance
        # from the dense one, and the Ritz value is within its residual of an eigenvalue of the operator.
        # The operator is not exactly `f32` (another float32 evaluation, summed in another order on other
        # kernels), so its distance is bounded by the forward error of a float32 product of size n,
        # n * eps32 * ||H|| (Higham, Thm 3.5), or by the measured ||f32 - dense||, whichever is larger.
        n_eps = len(idx) * float(torch.finfo(torch.float32).eps) * float(torch.linalg.matrix_norm(dense, ord=2))
        err = max(float(torch.linalg.matrix_norm(f32 - dense, ord=2)), n_eps) + res.residuals[0, b]
        assert res.sizes[b] == len(idx) and res.converged[0, b]
        assert abs(res.top[0, b] - float(torch.linalg.eigvalsh(dense)[-1])) <= err + 1e-9
        # every block has at most 64 entries: the trace is exact, the sum of the float32 diagonal
        assert res.trace_stderr[0, b] == 0.0
        assert abs(res.trace[0, b] - float(dense.trace())) <= float((f32 - dense).diagonal().abs().sum()) + 1e-6


def test_tensor_block_traces_sum_to_the_whole_trace_and_blocks_interlace(tiny):
    model, params, data, h = tiny
    res = per_layer_hessian(model, params, data, level="tensor", n_probes=64)
    assert res.trace[0].sum() == pytest.approx(float(h.trace()), rel=1e-4, abs=1e-5)
    # a diagonal block is a compression of H: its top eigenvalue never exceeds H's (Cauchy interlacing)
    assert res.top[0].max() <= float(torch.linalg.eigvalsh(h)[-1]) * (1 + 1e-4) + 1e-6


def test_hutchinson_trace_is_within_its_exact_standard_deviation(tiny):
    model, params, data, h = tiny
    res = per_layer_hessian(model, params, data, level="layer", n_probes=8, seed=3)
    for b, names in enumerate(parameter_blocks(list(params), "layer").values()):
        dense, _ = _block(model, h, names)
        # Var(z^T A z) = 2 (||A||_F^2 - sum_i a_ii^2) for Rademacher z
        sd = float(torch.sqrt(2 * ((dense**2).sum() - (dense.diagonal() ** 2).sum()) / 8))
        assert res.trace_stderr[0, b] > 0.0
        assert abs(res.trace[0, b] - float(dense.trace())) <= 4 * sd


def test_over_training_stacks_checkpoints_beside_two_over_lr(tiny):
    model, params, data, _ = tiny
    other = {k: v * 0.5 for k, v in params.items()}
    res = per_layer_hessian_over_training(model, [other, params], data, steps=[10, 20], lr=0.1, level="layer")
    assert isinstance(res, PerLayerHessian)
    assert res.top.shape == (2, 2) and list(res.steps) == [10, 20]
    np.testing.assert_allclose(res.threshold, [20.0, 20.0])
    last = per_layer_hessian(model, params, data, level="layer", step=20)
    np.testing.assert_allclose(res.top[1], last.top[0], rtol=1e-6)  # same seed, same numbers
    np.testing.assert_allclose(res.trace[1], last.trace[0], rtol=1e-6)
    assert per_layer_hessian(model, params, data).lr is None


def test_errors_name_the_bad_value(tiny):
    model, params, data, _ = tiny
    with pytest.raises(ValueError, match="needs at least one checkpoint; got 0"):
        per_layer_hessian_over_training(model, [], data)
    with pytest.raises(ValueError, match="got 1 steps for 2 checkpoints"):
        per_layer_hessian_over_training(model, [params, params], data, steps=[0])
    with pytest.raises(ValueError, match="n_probes must be at least 2.*got 1"):
        per_layer_hessian(model, params, data, n_probes=1)
