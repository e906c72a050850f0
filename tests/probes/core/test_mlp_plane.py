"""The MLP plane as a plain chain of products (engine/probes/core/mlp_plane.py) equals the generic path.

Tolerance: the chain runs the module's own operations on the same values (the first layer's
combined output, weights at theta_a + b * d2 formed the same way), in place where the module
makes a new tensor; only the order of float32 rounding differs from evaluating the full vector:
in the first-layer combination (Z0 + a Z1 + b Z2 against X (W0 + a D1 + b D2)^T, sums of 36
products: ~36 * 2**-24 relative to the terms' magnitudes) and in the later products, which run
feature-major (W @ h^T instead of h @ W^T: the same sums of at most 41 terms, blocked differently,
~41 * 2**-24 relative). We allow 1e-5 * (1 + |loss|) and
a difference of at most one sample in the accuracy (a flipped near-tie).
"""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.probes.core import Evaluator, evaluate_plane, evaluate_points
from engine.probes.core.mlp_plane import _bias_as_column, _chain, mlp_plane_point  # noqa: PLC2701
from engine.probes.core.plane_eval import _first_layer  # noqa: PLC2701 - the split the chain builds on


class Residual(nn.Module):
    """Linear -> ReLU -> Linear with a skip connection: not a plain chain."""

    def __init__(self):
        super().__init__()
        self.fc1, self.act, self.fc2, self.head = nn.Linear(36, 16), nn.ReLU(), nn.Linear(16, 16), nn.Linear(16, 3)

    def forward(self, x):
        h = self.act(self.fc1(x.flatten(1)))
        return self.head(h + self.act(self.fc2(h)))


def _mlp(act=nn.ReLU, out=3, width=24):
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, width), act(), nn.Dropout(0.5), nn.Linear(width, width), act(),
                         nn.Identity(), nn.Linear(width, out))


def _data(n=300, out=3):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(n, 1, 36, generator=g)
    y = torch.randint(0, 3, (n,), generator=g) if out == 3 else torch.randn(n, out, generator=g)
    return x, y


def _plane(model):
    theta0 = torch.cat([p.detach().reshape(-1) for p in model.parameters()])
    g = torch.Generator().manual_seed(3)
    d1, d2 = torch.randn(theta0.shape, generator=g) * 0.2, torch.randn(theta0.shape, generator=g) * 0.2
    axis = torch.linspace(-1, 1, 6)
    return theta0, d1, d2, torch.cartesian_prod(axis, axis)


def _chain_used(model, data, theta0, d1, d2, coords, **kw) -> bool:
    ev = Evaluator(model, data, **kw)
    first = _first_layer(ev, theta0, d1, d2, coords)
    assert first is not None
    zs = [first.output(ev.layout.unflatten(t)) for t in (theta0, d1, d2)]
    return mlp_plane_point(ev, first.path, theta0, d1, d2, zs, coords) is not None


def _close(a, b, n):
    (la, aa), (lb, ab) = a, b
    assert torch.all((la - lb).abs() <= 1e-5 * (1 + lb.abs())), (la - lb).abs().max()
    assert torch.all(((aa - ab).abs() <= 1.0 / n + 1e-12) | (aa.isnan() & ab.isnan()))


@pytest.mark.parametrize("act", [nn.ReLU, nn.Tanh, nn.GELU], ids=["relu", "tanh", "gelu"])
@pytest.mark.parametrize("rows", [None, 64], ids=["all-rows", "row-chunks"])
@pytest.mark.parametrize("width", [24, 40], ids=["narrow-hidden", "wide-hidden"])
def test_chain_equals_generic_evaluation(act, rows, width):
    # width 40 > NARROW_OUT: after a ReLU the hidden layer's bias runs as a weight column
    model, data = _mlp(act, width=width), _data()
    theta0, d1, d2, coords = _plane(model)
    assert _chain_used(model, data, theta0, d1, d2, coords)
    ev = Evaluator(model, data)
    steps = _chain(ev, "1", theta0)
    assert _bias_as_column(steps) == (act is nn.ReLU and width == 40)
    fast = evaluate_plane(model, theta0, d1, d2, coords, data, strategy="loop", rows=rows)
    thetas = theta0 + coords[:, :1] * d1 + coords[:, 1:] * d2
    generic = evaluate_points(model, thetas, data, strategy="loop", rows=rows)
    _close(fast, generic, len(data[0]))
    vmapped = evaluate_plane(model, theta0, d1, d2, coords, data, strategy="vmap")  # not the chain
    _close(fast, vmapped, len(data[0]))


def test_wide_last_layer_and_regression_loss():
    model, data = _mlp(nn.ReLU, out=40), _data(out=40)  # 40 outputs: not the narrow, transposed product
    theta0, d1, d2, coords = _plane(model)
    assert _chain_used(model, data, theta0, d1, d2, coords, loss_fn=F.mse_loss)
    fast = evaluate_plane(model, theta0, d1, d2, coords, data, strategy="loop", loss_fn=F.mse_loss)
    thetas = theta0 + coords[:, :1] * d1 + coords[:, 1:] * d2
    _close(fast, evaluate_points(model, thetas, data, strategy="loop", loss_fn=F.mse_loss), len(data[0]))
    assert torch.isnan(fast[1]).all()


def test_a_model_that_is_not_a_chain_keeps_the_generic_path():
    model, data = Residual(), _data()
    theta0, d1, d2, coords = _plane(model)
    assert not _chain_used(model, data, theta0, d1, d2, coords)  # its output does not match the chain's
    fast = evaluate_plane(model, theta0, d1, d2, coords, data, strategy="loop")
    thetas = theta0 + coords[:, :1] * d1 + coords[:, 1:] * d2
    _close(fast, evaluate_points(model, thetas, data, strategy="loop"), len(data[0]))


def test_chain_on_worker_threads(monkeypatch):
    model, data = _mlp(), _data()
    theta0, d1, d2, coords = _plane(model)
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "1")
    one = evaluate_plane(model, theta0, d1, d2, coords, data, strategy="loop")
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "2")
    two = evaluate_plane(model, theta0, d1, d2, coords, data, strategy="loop")
    _close(two, one, len(data[0]))


def test_deeper_chain_runs_feature_major_and_equals_generic_evaluation():
    # two hidden ReLU layers after the first: the first ReLU fused with the combination, the bias of the
    # next layer a weight column, the later ReLU in place on its product, the head's bias a column (out, 1)
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(36, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 33),
                          nn.ReLU(), nn.Linear(33, 3))
    data = _data()
    theta0, d1, d2, coords = _plane(model)
    assert _chain_used(model, data, theta0, d1, d2, coords)
    fast = evaluate_plane(model, theta0, d1, d2, coords, data, strategy="loop")
    thetas = theta0 + coords[:, :1] * d1 + coords[:, 1:] * d2
    _close(fast, evaluate_points(model, thetas, data, strategy="loop"), len(data[0]))


class ClampedHidden(nn.Module):
    """Linear -> ReLU -> clamp -> Linear, the clamp a function call between the leaves, not a module."""

    def __init__(self, bound: float):
        super().__init__()
        self.fc1, self.act, self.head, self.bound = nn.Linear(36, 16), nn.ReLU(), nn.Linear(16, 3), bound

    def forward(self, x):
        return self.head(self.act(self.fc1(x.flatten(1))).clamp(max=self.bound))


def test_a_step_between_leaves_that_the_checked_rows_do_not_show_keeps_the_generic_path():
    """A clamp that cuts nothing on the rows and points the chain is checked on (the first 64 rows,
    three points) but cuts the later rows: the chain would leave it out there."""
    model, (x, y) = ClampedHidden(bound=1e9), _data()
    x[64:] *= 8  # later rows reach hidden values the first ones do not
    theta0, d1, d2, coords = _plane(model)
    with torch.no_grad():
        hidden = [torch.relu(F.linear(x.flatten(1), *(t[: 36 * 16].view(16, 36), t[36 * 16 : 37 * 16])))
                  for t in (theta0 + c[0] * d1 + c[1] * d2 for c in coords)]
    model.bound = 1.01 * max(float(h[:64].max()) for h in hidden)
    assert max(float(h[64:].max()) for h in hidden) > 2 * model.bound  # the clamp cuts the later rows
    data = (x, y)
    assert not _chain_used(model, data, theta0, d1, d2, coords)
    fast = evaluate_plane(model, theta0, d1, d2, coords, data, strategy="loop")
    thetas = theta0 + coords[:, :1] * d1 + coords[:, 1:] * d2
    _close(fast, evaluate_points(model, thetas, data, strategy="loop"), len(x))
