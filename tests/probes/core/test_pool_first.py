"""Built-in conv blocks pool before their ReLU on a CPU (cpu_kernels.PoolFirstConvBlock): equal bit for bit.

A block's output is equal bit for bit: max(relu(u), relu(v)) = relu(max(u, v)) holds exactly in
floating point, NaN included. Through a whole model, on the portable kernels (ATEN_CPU_CAPABILITY=default)
a later layer's kernel may sum in another order for a tensor it did not allocate itself the same
way: 1.5e-8 was seen on O(1) outputs, so the model outputs are compared to 1e-6.
"""

import pytest
import torch

from engine.config import ArchSpec
from engine.nets import build
from engine.nets.cnn import ConvBlock
from engine.probes.core import cpu_kernels, evaluate_points
from engine.probes.core.cpu_kernels import PoolFirstConvBlock, TapConv1d, with_cpu_kernels


def _x(n=200, channels=1):
    return torch.randn(n, channels, 40, generator=torch.Generator().manual_seed(0))


def test_relu_blocks_pool_first_and_give_the_same_bits():
    # two input channels: a one-channel first conv would be a TapConv1d, which sums in another order
    model = build(ArchSpec(name="cnn1d", width=16, depth=3), (2, 40), 10, seed=0).eval()
    fast = with_cpu_kernels(model)
    assert all(type(b) is PoolFirstConvBlock for b in fast.layers)
    assert all(type(b) is ConvBlock for b in model.layers)  # the caller's module is untouched
    x = _x(channels=2)
    x[3, 0, 5] = float("nan")  # NaN propagates the same way through both orders
    with torch.no_grad():
        for mine, theirs in zip(fast.layers, model.layers):
            assert torch.equal(mine(x).nan_to_num(7.0), theirs(x).nan_to_num(7.0))  # same bits, NaN where it was
            assert torch.equal(mine(x).isnan(), theirs(x).isnan())
            x = theirs(x)
        x = _x(channels=2)
        assert torch.allclose(fast(x), model(x), rtol=1e-6, atol=1e-6)


def test_batchnorm_blocks_pool_first_in_the_evaluator():
    model = build(ArchSpec(name="cnn1d", width=16, depth=2, options={"batchnorm": True}), (1, 40), 10, seed=0)
    model.train()
    with torch.no_grad():
        model(_x(256))
    model.eval()
    x, y = _x(), torch.randint(0, 10, (200,), generator=torch.Generator().manual_seed(1))
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])[None]
    loss, acc = evaluate_points(model, theta, (x, y), strategy="loop")
    with torch.no_grad():
        out = model(x)
    assert abs(float(loss[0]) - float(torch.nn.functional.cross_entropy(out, y))) <= 1e-6 * (1 + float(loss[0]))
    assert abs(float(acc[0]) - float((out.argmax(1) == y).double().mean())) <= 1e-6  # a float32 mean


def test_other_activations_keep_their_order():
    # tanh is monotone too, but a vectorised tanh need not be monotone to the last bit: only ReLU is swapped
    model = build(ArchSpec(name="cnn1d", width=8, depth=2, options={"activation": "tanh"}), (1, 40), 10, seed=0)
    fast = with_cpu_kernels(model.eval())
    assert not any(type(b) is PoolFirstConvBlock for b in fast.layers)


def test_differentiated_blocks_run_the_modules_own_layers():
    """With gradients on, the fast kernels step aside (the strided maximum's double backward
    doubled a Hessian-vector product): the autograd graph is max_pool1d's, and a
    Hessian-vector product through the evaluator equals one through the plain model."""
    from torch.func import grad, jvp

    from engine.probes.core import Evaluator

    model = build(ArchSpec(name="cnn1d", width=8, depth=2), (2, 40), 10, seed=0).eval()
    fast = with_cpu_kernels(model)
    x = _x(32, channels=2).requires_grad_(True)
    out = fast.layers[0](x)
    seen, stack = set(), [out.grad_fn]
    while stack:
        node = stack.pop()
        if node is not None and node not in seen:
            seen.add(node)
            stack.extend(n for n, _ in node.next_functions)
    names = {type(n).__name__ for n in seen}
    assert any("MaxPool" in n for n in names) and not any("Maximum" in n for n in names), names
    with torch.no_grad():  # evaluation still takes the fast path, same bits
        assert torch.equal(fast.layers[0](x), model.layers[0](x))

    y = torch.randint(0, 10, (32,), generator=torch.Generator().manual_seed(1))
    ev = Evaluator(model, (x.detach(), y))
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    v = torch.randn(theta.shape, generator=torch.Generator().manual_seed(2))

    def loss_of(module):
        return lambda t: torch.nn.functional.cross_entropy(
            torch.func.functional_call(module, ev.layout.unflatten(t), (x.detach(),)), y)

    hv_fast = jvp(grad(loss_of(ev.module)), (theta,), (v,))[1]
    hv_plain = jvp(grad(loss_of(model)), (theta,), (v,))[1]
    # the evaluator's NarrowLinear head sums its products in another order: equal to float32 rounding
    # (the largest entry times ~1000 eps32 covers the few dozen terms of each of the chained sums)
    torch.testing.assert_close(hv_fast, hv_plain, rtol=0, atol=1e-4 * float(hv_plain.abs().max()))


@pytest.mark.parametrize("kernel,padding,bias", [(3, 1, True), (3, 1, False), (5, 2, True), (1, 0, True), (3, 0, True)])
def test_one_channel_convolutions_as_taps_equal_the_convolution(monkeypatch, kernel, padding, bias):
    """TapConv1d: the sum of ``kernel`` shifted, scaled copies of the input (forced here; in use only
    where measured faster). Each output is a sum of kernel + 1 products of O(1) values: equal to
    the convolution within (kernel + 1) eps32 times the sum of their magnitudes."""
    monkeypatch.setattr(cpu_kernels, "_taps_faster", lambda *args: True)
    conv = torch.nn.Conv1d(1, 16, kernel, padding=padding, bias=bias)
    fast = with_cpu_kernels(torch.nn.Sequential(conv))[0]
    assert type(fast) is TapConv1d and type(conv) is torch.nn.Conv1d
    x = _x(64)
    with torch.no_grad():
        ours, theirs = fast(x), conv(x)
        xp = torch.nn.functional.pad(x, (padding, padding)).abs()
        size = torch.nn.functional.conv1d(xp, conv.weight.abs(), None if not bias else conv.bias.abs())
    assert ours.shape == theirs.shape and ours.is_contiguous()
    assert ((ours - theirs).abs() <= (kernel + 1) * torch.finfo(torch.float32).eps * size).all()
    with torch.enable_grad():  # differentiated: PyTorch's own convolution
        assert "Convolution" in type(fast(x.requires_grad_(True)).grad_fn).__name__


def test_batchnorm_folds_into_the_conv_in_evaluation_mode(monkeypatch):
    """conv -> BatchNorm (running statistics) -> ReLU -> pool as one conv with scaled weights:
    equal to the module within float32 rounding; in training mode (batch statistics) not folded."""
    model = build(ArchSpec(name="cnn1d", width=16, depth=2, options={"batchnorm": True}), (2, 40), 10, seed=0)
    with torch.no_grad():
        for block in model.layers:  # statistics far from (0, 1), so that a wrong fold would show
            block.norm.running_mean.uniform_(-2, 2)
            block.norm.running_var.uniform_(0.1, 4)
            block.norm.weight.uniform_(-2, 2)
    model.eval()
    fast = with_cpu_kernels(model)
    inputs, expected = [_x(channels=2)], []
    with torch.no_grad():
        for block in model.layers:
            expected.append(block(inputs[-1]))
            inputs.append(expected[-1])
    calls, real = [], torch.nn.functional.batch_norm
    monkeypatch.setattr(torch.nn.functional, "batch_norm", lambda *a, **k: calls.append(1) or real(*a, **k))
    with torch.no_grad():
        for block, x, want in zip(fast.layers, inputs, expected):
            torch.testing.assert_close(block(x), want, rtol=1e-5, atol=1e-5)
    assert calls == []  # folded: no batch_norm ran
    fast.train()
    with torch.no_grad():
        fast.layers[0](inputs[0])
    assert calls == [1]  # batch statistics: not folded


def test_one_channel_convolutions_under_vmap_are_pytorchs_and_quiet():
    """vmap has no batching rule for the taps' in-place addcmul_ (a slow fallback and a warning):
    batched calls go to PyTorch's convolution, with the same values as one call per point."""
    import warnings

    conv = torch.nn.Conv1d(1, 8, 3, padding=1)
    fast = with_cpu_kernels(torch.nn.Sequential(conv))[0]
    x = _x(16)
    weights = torch.stack([conv.weight.detach() * s for s in (1.0, 0.5, -2.0)])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        batched = torch.func.vmap(lambda w: torch.func.functional_call(fast, {"weight": w, "bias": conv.bias}, (x,)))(
            weights)
        for w, out in zip(weights, batched):
            torch.testing.assert_close(out, torch.nn.functional.conv1d(x, w, conv.bias, padding=1))


def test_taps_are_used_only_where_measured_faster_once_per_shape(monkeypatch):
    """The choice between the taps and the library's convolution is timed once per input shape (and
    weight shape, dtype, threads) and kept; the library's way gives its own values bit for bit."""
    monkeypatch.setattr(cpu_kernels, "_TAPS_CHOICE", {})
    timed = []
    monkeypatch.setattr(cpu_kernels, "best_seconds", lambda fn, repeats: timed.append(fn.__name__) or
                        (1.0 if fn.__name__ == "taps" else 2.0) * slower[0])
    slower = [1.0]
    conv = torch.nn.Conv1d(1, 8, 3, padding=1)
    fast = with_cpu_kernels(torch.nn.Sequential(conv))[0]
    with torch.no_grad():
        fast(_x(32)), fast(_x(32)), fast(_x(16))
        assert timed == ["taps", "library", "taps", "library"]  # two shapes, each timed once
        monkeypatch.setattr(cpu_kernels, "_TAPS_CHOICE", {})
        slower[0] = -1.0  # now the taps measure slower
        x = _x(24)
        assert torch.equal(fast(x), conv(x))
