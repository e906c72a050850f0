"""The built-in 1-D ConvNet as plain operations in row blocks (engine/probes/core/conv_chain.py, conv_plane.py).

Tolerance. The chain computes every convolution, the head and the folded BatchNorm as sums of the
same products as the module, in another order (channels-last shifted products with the bias as one
more term, BatchNorm folded into the weights, the mean folded into the head); max pooling and ReLU
are exact. Summing ``n`` terms in float32 errs by at most ``n u`` times the sum of their absolute
values (``u = 2**-24``, first order), and an error made in one layer reaches the logits scaled by at
most the later layers' absolute weights. So each logit of either computation is within
``gamma * A`` of the exact value, where ``gamma = u * (sum over layers of the terms per sum + 8)``
(the 8: the fold's and the mean's few roundings) and ``A`` is the logit of the *absolute* network
(every folded weight and bias, and the input, replaced by its absolute value; computed in float64),
which bounds every partial sum on the way. The chain and the module may differ by twice that.
Losses then differ by at most twice the largest logit difference (cross-entropy is 2-Lipschitz in
the logits' max-norm) plus a few roundings of the mean, and the accuracy by at most one sample (a
flipped near-tie).

Every test runs twice: on the compiled loops of :mod:`engine.probes.core.native` (the first block's
convolution and every pool and ReLU fused) and on PyTorch's operators. The compiled first convolution
sums the same ``c_in k + 1`` terms as the product, so the bound above holds for both.
"""

import copy

import pytest
import torch
from torch import nn
from torch.func import functional_call

from engine.config import ArchSpec
from engine.nets import build
from engine.probes.connectivity import interpolate
from engine.probes.core import (
    Evaluator,
    default_loss,
    evaluate_plane,
    evaluate_points,
    fast_default_loss,
    native,
    path_eval,
)
from engine.probes.core.conv_chain import conv_chain
from engine.probes.core.conv_plane import _Runner, _to_chain, conv_plane_point  # noqa: PLC2701

U = 2.0**-24


@pytest.fixture(autouse=True, params=["compiled-plan", "compiled-loops", "torch-ops"])
def kernels(request, monkeypatch):
    """Each test on the compiled loops as one plan a point (products by the BLAS's ``sgemm_`` from C),
    on the compiled loops between PyTorch's products (no ``sgemm_`` found), and on PyTorch's operators."""
    monkeypatch.setenv(native.ENV, "0" if request.param == "torch-ops" else "1")
    found = native.kernels()
    if request.param != "torch-ops" and found is None:
        pytest.skip("no C compiler here (tests/probes/core/test_native.py fails where there is one)")
    if request.param == "compiled-plan" and found.sgemm is None:
        pytest.skip("no sgemm_ in PyTorch's library here")
    if request.param == "compiled-loops":
        monkeypatch.setattr(found, "sgemm", None)
    return request.param


def _model(width=8, depth=3, bn=False, k=3, pool=True, shape=(1, 40), act="relu", seed=0):
    options = {"batchnorm": bn, "kernel_size": k, "pool": pool, "activation": act}
    model = build(ArchSpec(name="cnn1d", width=width, depth=depth, options=options), shape, 3, seed=seed)
    if bn:  # running statistics and affine parameters away from their defaults
        g = torch.Generator().manual_seed(seed + 5)
        model.train()
        with torch.no_grad():
            model(torch.randn(64, *shape, generator=g) * 1.5 + 0.3)
            for m in model.modules():
                if isinstance(m, nn.BatchNorm1d):
                    m.weight.mul_(1 + 0.3 * torch.randn(m.weight.shape, generator=g))
                    m.bias.add_(0.2 * torch.randn(m.bias.shape, generator=g))
    return model.eval()


def _data(shape=(1, 40), n=300):
    g = torch.Generator().manual_seed(2)
    return torch.randn(n, *shape, generator=g), torch.randint(0, 3, (n,), generator=g)


def _plane(model, scale=0.2):
    theta0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    g = torch.Generator().manual_seed(3)
    d1, d2 = torch.randn(theta0.shape, generator=g) * scale, torch.randn(theta0.shape, generator=g) * scale
    axis = torch.linspace(-1, 1, 4)
    return theta0, d1, d2, torch.cartesian_prod(axis, axis)


def _abs_logits(model, params, buffers, x):
    """Logits of the absolute network (BatchNorm folded first), float64: the bound ``A`` of the docstring."""
    twin = _model(width=model.head.in_features, depth=len(model.layers), bn=False,
                  k=model.layers[0].conv.kernel_size[0], pool=isinstance(model.layers[0].pool, nn.MaxPool1d),
                  shape=tuple(x.shape[1:])).double()
    state = {}
    for i, layer in enumerate(model.layers):
        w, b = params[f"layers.{i}.conv.weight"].double(), params.get(f"layers.{i}.conv.bias")
        b = torch.zeros(w.shape[0], dtype=torch.float64) if b is None else b.double()
        if isinstance(layer.norm, nn.BatchNorm1d):
            s = params[f"layers.{i}.norm.weight"].double() / (buffers[f"layers.{i}.norm.running_var"].double()
                                                             + layer.norm.eps).sqrt()
            b = (b - buffers[f"layers.{i}.norm.running_mean"].double()) * s + params[f"layers.{i}.norm.bias"].double()
            w = w * s[:, None, None]
        state[f"layers.{i}.conv.weight"], state[f"layers.{i}.conv.bias"] = w.abs(), b.abs()
    state["head.weight"], state["head.bias"] = params["head.weight"].double().abs(), params["head.bias"].double().abs()
    return functional_call(twin, state, (x.double().abs(),))


def _gamma(model, x) -> float:
    length, terms = x.shape[-1], 0
    for layer in model.layers:
        conv = layer.conv
        terms += conv.in_channels * conv.kernel_size[0] + 1
        length = length // 2 if isinstance(layer.pool, nn.MaxPool1d) else length
    return U * (terms + model.head.in_features * length + 1 + 8)


CONFIGS = {
    "relu-k3-pool": {},
    "bn-k3-pool": {"bn": True},
    "k5-width12": {"k": 5, "width": 12},
    "bn-k5-no-pool": {"bn": True, "k": 5, "pool": False},
    "odd-length-2-channels": {"shape": (2, 37)},
    "bn-odd-length-depth2": {"bn": True, "shape": (1, 41), "depth": 2},
    "depth1": {"depth": 1},
    "k1": {"k": 1, "width": 6},
}


@pytest.mark.parametrize("config", CONFIGS.values(), ids=CONFIGS.keys())
def test_chain_logits_equal_the_module_up_to_rounding(config, kernels):
    shape = config.get("shape", (1, 40))
    model, (x, y) = _model(**config), _data(shape)
    ev = Evaluator(model, (x, y))
    chain = conv_chain(ev)
    assert chain is not None
    theta0, d1, d2, _ = _plane(model)
    runner = _Runner(chain, ev, None)
    assert (runner.native is not None) == (kernels != "torch-ops")
    st = runner.local
    n, gamma = len(x), _gamma(model, x)
    for a, b in [(0.0, 0.0), (1.0, -1.0), (-0.4, 0.9)]:
        theta = theta0 + a * d1 + b * d2
        params = ev.layout.unflatten(theta)
        st.params.copy_(_to_chain(chain, params))
        for block in (n, 64):  # one block, and blocks with a remainder
            mine = runner.logits(st, ev.buffers, n, block).T
            theirs = functional_call(ev.module, {**params, **ev.buffers}, (x,))
            bound = 2 * gamma * _abs_logits(model, params, ev.buffers, x)
            assert ((mine.double() - theirs.double()).abs() <= bound).all(), (mine - theirs).abs().max()
    assert (len(st.spans[(n, 64)]) == 1) == (kernels == "compiled-plan")  # 5 blocks, or one plan for all


def _count_gap(a, b, n):
    """How many samples two accuracies over ``n`` samples count differently: each is count / n rounded
    once (within 2**-24 of it), so round(acc * n) is the count exactly while n * 2**-24 < 1/2."""
    return ((torch.as_tensor(a).double() * n).round() - (torch.as_tensor(b).double() * n).round()).abs()


def _params(model, theta):
    params, at = {}, 0
    for name, p in model.named_parameters():
        params[name] = theta[at : at + p.numel()].view(p.shape)
        at += p.numel()
    return params


def _close(fast, generic, model, x, theta0, d1, d2, coords, buffers):
    """Losses within twice the largest logit bound over the points (+4 ulps of the mean), accuracy within a sample."""
    gamma = _gamma(model, x)
    worst = 0.0
    for a, b in coords.tolist():
        params = _params(model, theta0 + a * d1 + b * d2)
        worst = max(worst, float(2 * gamma * _abs_logits(model, params, buffers, x).max()))
    (lf, af), (lg, ag) = fast, generic
    assert torch.all((lf - lg).abs() <= 2 * worst + 4 * U * lg.abs()), (lf - lg).abs().max()
    assert torch.all(_count_gap(af, ag, len(x)) <= 1)


@pytest.mark.parametrize("config", [{}, {"bn": True, "k": 5}, {"shape": (2, 37), "pool": False}],
                         ids=["relu", "bn-k5", "odd-no-pool"])
@pytest.mark.parametrize("rows", [None, 100], ids=["measured-blocks", "blocks-of-100"])
def test_plane_equals_generic_evaluation(config, rows):
    shape = config.get("shape", (1, 40))
    model, data = _model(**config), _data(shape)
    theta0, d1, d2, coords = _plane(model)
    ev = Evaluator(model, data, loss_fn=fast_default_loss)
    assert conv_plane_point(ev, theta0, d1, d2, coords, rows) is not None
    fast = evaluate_plane(model, theta0, d1, d2, coords, data, rows=rows, loss_fn=fast_default_loss)
    thetas = theta0 + coords[:, :1] * d1 + coords[:, 1:] * d2
    generic = evaluate_points(model, thetas, data, strategy="loop", loss_fn=fast_default_loss)
    _close(fast, generic, model, data[0], theta0, d1, d2, coords, dict(model.named_buffers()))


def test_chain_on_worker_threads(monkeypatch):
    model, data = _model(bn=True), _data()
    theta0, d1, d2, coords = _plane(model)
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "1")
    one = evaluate_plane(model, theta0, d1, d2, coords, data, strategy="loop")
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "2")
    two = evaluate_plane(model, theta0, d1, d2, coords, data, strategy="loop")
    assert torch.allclose(one[0], two[0], rtol=0, atol=1e-6) and torch.equal(one[1], two[1])  # same sums, blocked alike


class Clamped(nn.Module):
    """Something between the blocks: not the chain."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        for layer in self.net.layers:
            x = layer(x).clamp(max=0.5)
        return self.net.head(x.mean(2))


def _refused(model, data, **kw):
    ev = Evaluator(model, data, **kw)
    return conv_chain(ev) is None


def test_models_the_chain_does_not_compute_are_refused_and_keep_the_generic_path():
    data = _data()
    hooked = _model()
    hooked.layers[1].register_forward_hook(lambda m, i, o: o * 2)  # changes the output unseen by the chain
    subclassed = _model()
    subclassed.forward = lambda x: x[:, 0, :3]  # an instance's own forward
    cases = {"tanh": _model(act="tanh"), "hooked": hooked, "clamp between blocks": Clamped(_model()),
             "own forward": subclassed}
    for name, model in cases.items():
        assert _refused(model, data), name
        theta0, d1, d2, coords = _plane(model)
        fast = evaluate_plane(model, theta0, d1, d2, coords, data, strategy="loop")
        thetas = theta0 + coords[:, :1] * d1 + coords[:, 1:] * d2
        generic = evaluate_points(model, thetas, data, strategy="loop")
        assert torch.allclose(fast[0], generic[0], rtol=1e-5, atol=1e-6), name  # the generic path either way
        assert torch.all(_count_gap(fast[1], generic[1], len(data[0])) <= 1), name
    assert _refused(_model(bn=True), data, bn="batch")  # batch statistics cannot be folded


def test_interpolation_with_batchnorm_equals_the_generic_path(monkeypatch):
    x, y = _data()
    a, b = _model(bn=True, seed=0), _model(bn=True, seed=1)
    end_a, end_b = a.state_dict(), b.state_dict()
    made = []
    chain_line = path_eval.conv_line_point
    monkeypatch.setattr(path_eval, "conv_line_point", lambda *args, **kw: made.append(chain_line(*args, **kw))
                        or made[-1])
    for bn in ("running", "reset"):
        fast = interpolate(a, end_a, end_b, (x, y), alphas=5, bn=bn)
        assert made and made[-1] is not None, bn  # the chain ran the line
        with monkeypatch.context() as m:
            m.setattr(path_eval, "conv_line_point", lambda *args, **kw: None)
            generic = interpolate(a, end_a, end_b, (x, y), alphas=5, bn=bn)
        # the losses of O(1) logits of these small nets: within 1e-5 (the bound above is ~1e-6 here)
        assert abs(fast.loss - generic.loss).max() <= 1e-5, bn
        assert _count_gap(fast.accuracy, generic.accuracy, len(x)).max() <= 1, bn


def _smoothed(out, y):
    return nn.functional.cross_entropy(out, y, label_smoothing=0.1)


@pytest.mark.parametrize("loss_fn", [fast_default_loss, default_loss, _smoothed], ids=["fast", "default", "smoothed"])
def test_cross_entropy_is_scored_class_major_and_other_losses_by_the_evaluator(loss_fn):
    model, (x, y) = _model(), _data()
    theta0, d1, d2, coords = _plane(model)
    thetas = theta0 + coords[:, :1] * d1 + coords[:, 1:] * d2
    ev = Evaluator(model, (x, y), loss_fn=loss_fn)
    assert (_Runner(conv_chain(ev), ev, None).scorer is None) == (loss_fn is _smoothed)  # the path under test
    fast = evaluate_plane(model, theta0, d1, d2, coords, (x, y), strategy="loop", loss_fn=loss_fn)
    generic = evaluate_points(model, thetas, (x, y), strategy="loop", loss_fn=loss_fn)
    # label smoothing adds at most 0.1 x the mean |log-softmax| difference: inside the same bound
    _close(fast, generic, model, x, theta0, d1, d2, coords, dict(model.named_buffers()))
    x[200] = float("nan")  # one sample with NaN logits, after the rows the chain is checked on
    fast = evaluate_plane(model, theta0, d1, d2, coords, (x, y), strategy="loop", loss_fn=loss_fn)
    generic = evaluate_points(model, thetas, (x, y), strategy="loop", loss_fn=loss_fn)
    assert fast[0].isnan().all() and generic[0].isnan().all()
    # the NaN sample counts as argmax's class (the first) both ways; another sample can count differently
    # only where its top two exact logits are within the two ways' logit difference, 2 gamma A
    buffers, gamma, twin = dict(model.named_buffers()), _gamma(model, x), copy.deepcopy(model).double()
    flips = []
    for theta in thetas:
        params = _params(model, theta)
        width = float(2 * gamma * _abs_logits(model, params, buffers, x).nan_to_num(0).max())
        exact = functional_call(twin, {k: v.double() for k, v in {**params, **buffers}.items()}, (x.double(),))
        top = exact.topk(2, dim=1).values
        flips.append(int((top[:, 0] - top[:, 1] <= width).sum()))
    # compared as counts (_count_gap): no tolerance on the fractions
    assert torch.all(_count_gap(fast[1], generic[1], len(x)) <= torch.tensor(flips, dtype=torch.float64))


def test_labels_the_loss_refuses_are_refused_on_the_chain_too():
    """int32 labels: F.cross_entropy raises; the chain's own scorer must not score them instead."""
    model, (x, y) = _model(), _data()
    theta0, d1, d2, coords = _plane(model)
    thetas = theta0 + coords[:, :1] * d1 + coords[:, 1:] * d2
    with pytest.raises(RuntimeError, match="target dtype"):
        evaluate_points(model, thetas, (x, y.int()), strategy="loop", loss_fn=default_loss)
    with pytest.raises(RuntimeError, match="target dtype"):
        evaluate_plane(model, theta0, d1, d2, coords, (x, y.int()), strategy="loop", loss_fn=default_loss)
