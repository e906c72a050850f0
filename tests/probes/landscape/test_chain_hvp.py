"""Hessian-vector products of ReLU MLPs written out by hand (``chain_hvp.ChainHessian``) against
a dense float64 Hessian and against autograd's products, and the models it must refuse.

Tolerances. In float64 the hand-written product and the dense Hessian (autograd) compute the
same sums in different orders. Each entry of ``H v`` is a sum over the ``n`` samples of
products formed through ``L`` layers of fan-in at most ``K``; with round-to-nearest each of
the ``L K + n`` additions and multiplications on the way contributes a relative error of at
most ``eps`` of the terms' absolute sizes (Higham, "Accuracy and Stability of Numerical
Algorithms", 2002, sec. 3.1), so ``|fast - dense v| <= (L K + n) eps * (|H| |v|)`` entry by
entry up to terms of order eps^2, taking ``|H| |v|`` for the size of the terms; the tests
allow 4 times that. Where the softmax's derivative cancels (a class of probability near 1:
``p - p^2`` from terms of size ``p``) the terms are larger than ``|H| |v|`` says: the float32
case of saturated logits below, and the bench-sized float32 models, where no dense Hessian
fits either. There the float64 product is the exact reference and the float32 error of the
hand-written product must be of the size of autograd's own float32 error (the same arithmetic
in another order: 4 times it allowed).
"""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from engine.config import ArchSpec
from engine.nets import build
from engine.probes.core import ParamLayout, default_loss, fast_default_loss, is_mean_cross_entropy, run_loss
from engine.probes.landscape import hessian_operator, hessian_top_eigs

EPS32 = torch.finfo(torch.float32).eps
EPS64 = torch.finfo(torch.float64).eps


class _Twice(nn.Module):
    """One Linear applied twice: the same weight in two places."""

    def __init__(self):
        super().__init__()
        self.inp, self.mid, self.out = nn.Linear(5, 6), nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x):
        return self.out(torch.relu(self.mid(torch.relu(self.mid(torch.relu(self.inp(x)))))))


class _Residual(nn.Module):
    """Leaves that form a chain, and a skip connection the leaves do not show."""

    def __init__(self):
        super().__init__()
        self.inp, self.act, self.mid, self.out = nn.Linear(5, 6), nn.ReLU(), nn.Linear(6, 6), nn.Linear(6, 3)

    def forward(self, x):
        h = self.act(self.inp(x))
        return self.out(h + self.mid(h))


def _chains():
    """Models the hand-written products must take."""
    return {
        "relu": nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3)),
        "no_bias": nn.Sequential(nn.Linear(5, 7, bias=False), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(),
                                 nn.Linear(6, 3, bias=False)),
        "leaky_identity_dropout": nn.Sequential(nn.Linear(5, 7), nn.LeakyReLU(0.1), nn.Identity(),
                                                nn.Dropout(0.5), nn.Linear(7, 3)).eval(),
        "linear_linear_relu_relu": nn.Sequential(nn.Linear(5, 7), nn.Linear(7, 6), nn.ReLU(), nn.ReLU(),
                                                 nn.Linear(6, 3)),
    }


def _data(n=40, seed=1, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 5, generator=g).to(dtype), torch.randint(0, 3, (n,), generator=g)


def _dense_hessian(model, params, data, loss=F.cross_entropy):
    layout = ParamLayout.from_module(model)
    model = copy.deepcopy(model).double().eval()
    x, y = data

    def f(t):
        return loss(functional_call(model, layout.unflatten(t), (x.double(),)), y)

    return torch.autograd.functional.hessian(f, layout.flatten(params).double())


def _bound(h, v, n, depth, fan_in):
    """``4 (L K + n) eps64 |H| |v|`` (module docstring), entry by entry."""
    return 4 * (depth * fan_in + n) * EPS64 * (h.abs() @ v.abs())


def _model(name, seed=0):
    torch.manual_seed(seed)
    return _chains()[name].double()


@pytest.mark.parametrize("name", list(_chains()))
@pytest.mark.parametrize("rows", [None, 7])  # one chunk (state kept), or 6 chunks (recomputed per product)
def test_hand_written_products_equal_the_dense_hessian(name, rows):
    model = _model(name)
    params, data = dict(model.named_parameters()), _data()
    op = hessian_operator(model, params, data, rows=rows)
    assert op.by_hand and len(op.chunks) == (1 if rows is None else 6)
    h = _dense_hessian(model, params, data)
    v = torch.randn(3, op.n_params, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    got = op(v)  # (3, P), one product per row
    for i in range(3):
        assert ((got[i] - h @ v[i]).abs() <= _bound(h, v[i], 40, 3, 7)).all()
    assert torch.equal(op(v[0]), got[0])  # a single vector is the same product as a row of a batch


def test_subnormal_probabilities_are_flushed_without_changing_the_product():
    """Logits about 90 apart give float32 probabilities below its smallest normal number (they
    and what comes of them are set to 0, a change below ``tiny``). The float32 product is then
    as close to the dense float64 Hessian's as autograd's float32 product (module docstring)."""
    model = _model("relu").float()
    with torch.no_grad():
        model[4].weight.mul_(200.0)
    params, data = dict(model.named_parameters()), _data(dtype=torch.float32)
    op = hessian_operator(model, params, data)
    auto = hessian_operator(model, params, data, loss_fn=lambda out, t: F.cross_entropy(out, t))
    p = torch.softmax(model(data[0]), 1)
    assert op.by_hand and not auto.by_hand and ((p > 0) & (p < torch.finfo(torch.float32).tiny)).any()
    h = _dense_hessian(model, params, data)
    v = torch.randn(op.n_params, generator=torch.Generator().manual_seed(3))
    exact = h @ v.double()
    assert float((op(v).double() - exact).norm()) <= 4 * float((auto(v).double() - exact).norm())


class _ClippedInputs(nn.Module):
    """A chain whose forward clips its inputs to [-1.5, 1.5]: a step the leaves do not show, and one
    that changes nothing on rows inside the bounds (``_data`` puts such rows first)."""

    def __init__(self):
        super().__init__()
        self.inp, self.act, self.out = nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)

    def forward(self, x):
        return self.out(self.act(self.inp(x.clamp(-1.5, 1.5))))


class _FrozenWeight(nn.Linear):
    """A Linear whose output is the same as ``nn.Linear``'s but its weight gets no gradient."""

    def forward(self, x):
        return F.linear(x, self.weight.detach(), self.bias)


def _refused():
    """Models (and losses) the hand-written products must leave to autograd: (model, loss_fn)."""
    torch.manual_seed(0)
    custom = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    hooked = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3))
    hooked[0].register_forward_hook(lambda mod, args, out: out + (out - out.detach()))  # same value, twice the slope
    return {
        "tanh": (nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)), None),
        "batchnorm": (nn.Sequential(nn.Linear(5, 7), nn.BatchNorm1d(7), nn.ReLU(), nn.Linear(7, 3)).eval(), None),
        "custom_loss": (custom, lambda out, y: F.cross_entropy(out, y)),
        "called_twice": (_Twice(), None),
        "residual": (_Residual(), None),
        "clipped_beyond_the_first_rows": (_ClippedInputs(), None),  # agrees with the chain on rows 0-7 only
        "linear_subclass": (nn.Sequential(nn.Linear(5, 7), nn.ReLU(), _FrozenWeight(7, 3)), None),
        "forward_hook": (hooked, None),
    }


@pytest.mark.parametrize("name", list(_refused()))
def test_models_it_does_not_handle_keep_autograd_and_agree(name):
    model, loss = _refused()[name]
    model = model.double()
    params, (x, y) = dict(model.named_parameters()), _data()
    x[:8] = x[:8].clamp(-1.4, 1.4)  # the first 8 rows inside _ClippedInputs' bounds, others outside
    assert (x[8:].abs() > 1.6).any()
    data = (x, y)
    op = hessian_operator(model, params, data, loss_fn=loss)
    assert not op.by_hand
    v = torch.randn(op.n_params, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    h = _dense_hessian(model, params, data)
    assert ((op(v) - h @ v).abs() <= _bound(h, v, 40, 4, 7)).all()


def test_the_library_cross_entropies_are_recognised_and_nothing_else():
    y = torch.tensor([0, 2, 1])
    for fn in (default_loss, fast_default_loss, run_loss("auto", "classification"), run_loss("cross_entropy")):
        assert is_mean_cross_entropy(fn, y, 3)
    assert not is_mean_cross_entropy(F.cross_entropy, y, 3)  # the same loss, but the caller's own function
    assert not is_mean_cross_entropy(default_loss, y.double(), 3)  # regression targets: MSE
    assert not is_mean_cross_entropy(default_loss, y, 2)  # a label out of range
    assert not is_mean_cross_entropy(default_loss, torch.tensor([-100, 1]), 3)  # an ignored index
    assert not is_mean_cross_entropy(default_loss, y[:, None], 3)  # token targets
    for dtype in (torch.int32, torch.int16, torch.uint8):  # the losses raise on these, or not all of them accept
        assert not is_mean_cross_entropy(default_loss, y.to(dtype), 3), dtype


def _bench_like(seed=0):
    """The MNIST-1D MLP of ``bench/hessian_top.py`` (40 -> 100 -> 100 -> 10, inputs (1, 40) that its
    forward flattens), 1000 random samples, float32."""
    model = build(ArchSpec(name="mlp", width=100, depth=2), (1, 40), 10, seed=seed)
    g = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(1000, 1, 40, generator=g)
    y = torch.randint(0, 10, (1000,), generator=g)
    return model, dict(model.named_parameters()), (x, y)


def test_float32_products_at_bench_sizes_are_as_accurate_as_autograds():
    model, params, (x, y) = _bench_like()
    fast = hessian_operator(model, params, (x, y))
    auto = hessian_operator(model, params, (x, y), loss_fn=lambda out, t: F.cross_entropy(out, t))
    model64 = copy.deepcopy(model).double()
    exact = hessian_operator(model64, dict(model64.named_parameters()), (x.double(), y),
                             loss_fn=lambda out, t: F.cross_entropy(out, t))
    assert fast.by_hand and not auto.by_hand and not exact.by_hand
    v = torch.randn(2, fast.n_params, generator=torch.Generator().manual_seed(5))
    ref = exact(v.double())
    err_fast, err_auto = (float((op(v).double() - ref).norm()) for op in (fast, auto))
    assert err_fast <= 4 * err_auto
    assert err_auto <= 1e3 * EPS32 * float(ref.norm())  # the reference error itself is float32-sized
    chunked = hessian_operator(model, params, (x, y), rows=300)  # 4 chunks, per-chunk state recomputed
    assert chunked.by_hand and len(chunked.chunks) == 4
    assert float((chunked(v).double() - ref).norm()) <= 4 * err_auto


def test_lanczos_top_eigenvalues_unchanged():
    """Both products converge Lanczos to the same pairs: each eigenvalue within its residual
    (tol * lambda) of the exact one, so within 2 tol lambda of each other, plus float32 rounding."""
    model, params, data = _bench_like(seed=3)
    loss = lambda out, t: F.cross_entropy(out, t)  # noqa: E731 - autograd's path
    tol = 1e-4
    fast = hessian_top_eigs(model, params, data, k=2, tol=tol)
    auto = hessian_top_eigs(model, params, data, k=2, tol=tol, loss_fn=loss)
    assert fast.converged and auto.converged
    lam = abs(auto.eigenvalues).max()
    assert abs(fast.eigenvalues - auto.eigenvalues).max() <= 2 * tol * lam + 1e3 * EPS32 * lam


@pytest.mark.parametrize("register", ["full_backward_hook", "full_backward_pre_hook"])
def test_a_backward_hook_keeps_autograd(register):
    """A backward hook may change a layer's gradients, which products written out by hand would not see."""
    model = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 3)).double()
    params, data = dict(model.named_parameters()), _data()
    assert hessian_operator(model, params, data).by_hand
    getattr(model[2], f"register_{register}")(lambda *args: None)
    assert not hessian_operator(model, params, data).by_hand


def test_products_scale_with_the_vector():
    """``H (c v) = c H v`` for vectors of any size float32 represents, like autograd's products:
    before the fix, subnormal numbers flushed at an absolute threshold (and the matrix products'
    underflow) lost 0.4 % of a product of size 1e-35 on this model. Against the dense float64
    Hessian applied to the float32 vector ``u = c v`` as given, both products keep the module
    docstring's bound ``4 (L K + n) eps32 |H| |u|`` (float32 arithmetic, probabilities near
    1/3: no cancellation of the softmax' derivative); the result's own rounding, ``eps32 / 2``
    of it, is below that. For ``c`` a power of two the scaled vector is ``v`` exactly, and so is
    the product, bit for bit."""
    model = _model("relu").float()
    params, data = dict(model.named_parameters()), _data(dtype=torch.float32)
    op = hessian_operator(model, params, data)
    auto = hessian_operator(model, params, data, loss_fn=lambda out, t: F.cross_entropy(out, t))
    assert op.by_hand and not auto.by_hand
    h = _dense_hessian(model, params, data)
    v = torch.randn(op.n_params, generator=torch.Generator().manual_seed(6))
    base = op(v)
    for c in (1e-36, 1e-30, 1e-20, 1.0, 1e20, 1e36):
        u = c * v  # (P,), float32
        exact = h @ u.double()
        bound = 4 * (3 * 7 + 40) * EPS32 * (h.abs() @ u.double().abs())
        for name, product in (("by hand", op), ("autograd", auto)):
            err = (product(u).double() - exact).abs()
            assert (err <= bound).all(), f"{name}, c={c}: error {float(err.max()):.3g}, bound {float(bound.max()):.3g}"
    for k in (-110, -60, 0, 60, 100):
        assert float(v.abs().min()) * 2.0**k > torch.finfo(torch.float32).tiny  # 2^k v exact
        assert torch.equal(op(v * 2.0**k), base * 2.0**k), k
