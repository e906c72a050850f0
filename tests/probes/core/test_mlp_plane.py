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
from engine.probes.core.cpu_kernels import ClassMajorScore
from engine.probes.core.functional import fast_default_loss
from engine.probes.core.mlp_plane import (  # noqa: PLC2701
    _bias_as_column,
    _chain,
    _scorer,
    mlp_plane_point,
)
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


def _count_gap(a, b, n):
    """How many samples two accuracies over ``n`` samples count differently: each is count / n rounded
    once (within 2**-24 of it), so round(acc * n) is the count exactly while n * 2**-24 < 1/2."""
    return ((torch.as_tensor(a).double() * n).round() - (torch.as_tensor(b).double() * n).round()).abs()


def _close(a, b, n):
    (la, aa), (lb, ab) = a, b
    assert torch.all((la - lb).abs() <= 1e-5 * (1 + lb.abs())), (la - lb).abs().max()
    assert torch.all((_count_gap(aa, ab, n) <= 1) | (aa.isnan() & ab.isnan()))


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


# The point's own scorer (cpu_kernels.ClassMajorScore) against float64 cross-entropy and torch's argmax.
# Tolerance: per sample the loss is log(sum of C exp's) - e_y in float32: each exp and the sum of C terms
# round at most (C + 1) * 2**-24 relative to the sum (>= 1), the log turns that into as much absolute
# error, plus one rounding of the difference (2**-24 * |loss_i|); the mean of N terms adds log2(N) * 2**-24
# relative. With C <= 10, N <= 4096: (C + 4 + 12) * 2**-24 * (1 + |loss|) < 2e-6 * (1 + |loss|).
# The accuracy is a count of exact comparisons: it must equal argmax's.

def _reference(logits, y):  # logits (C, N)
    loss = F.cross_entropy(logits.T.double(), y).float()
    return loss, (logits.max(0)[1] == y).float().mean()


def _scored(logits, y):
    score = ClassMajorScore(y, logits.shape[0])
    return score(logits.clone())


def _logits_with_edge_cases(classes=10, n=600):
    g = torch.Generator().manual_seed(5)
    logits = torch.randn(classes, n, generator=g) * 3
    y = torch.randint(0, classes, (n,), generator=g)
    cols = torch.arange(n)
    # confident samples: the target far above (loss ~ exp(-margin)) or far below (loss ~ margin) the rest,
    # around a large common offset that would swallow a loss computed as logsumexp(z) - z_y
    logits[:, :60] += 1e4  # a unit in the last place of 1e4 is 1e-3
    logits[y[:20], cols[:20]] = 1e4 + 30.0
    logits[y[20:40], cols[20:40]] = 1e4 - 5e3
    logits[y[40:60], cols[40:60]] = logits[:, 40:60].max(0).values + 4.0  # losses 5e-5 to 0.2
    # ties for the maximum: target the first of the tied classes, a later one, or not tied
    for i in range(60, 120):
        a, b = sorted(torch.randperm(classes, generator=g)[:2].tolist())
        top = float(logits[:, i].max()) + 1.0
        logits[a, i] = logits[b, i] = top
        y[i] = (a, b, (b + 1) % classes if (b + 1) % classes != a else (b + 2) % classes)[i % 3]
    logits[:, 120:130] = 0.0  # every class tied
    logits[y[130:140], cols[130:140]] = float("-inf")  # the target at -inf: an infinite loss
    logits[0, 140:145] = float("-inf")  # a non-target at -inf
    return logits, y


def test_point_score_equals_cross_entropy_and_argmax_on_edge_cases():
    logits, y = _logits_with_edge_cases()
    finite = torch.arange(len(y)) < 130  # the -inf targets make the mean loss infinite: checked apart
    loss, acc = _scored(logits[:, finite].contiguous(), y[finite])
    ref_loss, ref_acc = _reference(logits[:, finite], y[finite])
    assert abs(float(loss - ref_loss)) <= 2e-6 * (1 + abs(float(ref_loss)))
    assert float(acc) == float(ref_acc)
    loss, acc = _scored(logits, y)
    assert loss == float("inf") and float(acc) == float(_reference(logits, y)[1])
    for i in range(60):  # one column at a time: a confident sample's loss within 2e-6, not a unit of 1e4 (1e-3)
        loss, _ = _scored(logits[:, i : i + 1].contiguous(), y[i : i + 1])
        ref = float(F.cross_entropy(logits[:, i].double()[None], y[i : i + 1]))
        assert abs(float(loss) - ref) <= 2e-6 * (1 + ref), i
        assert i < 40 or float(loss) > 0  # losses of 5e-5 and more (1 + loss is a float32 above 1)


@pytest.mark.parametrize("bad", ["nan", "inf", "all -inf"])
def test_point_score_without_a_finite_maximum_is_argmax_and_nan(bad):
    logits, y = _logits_with_edge_cases()
    logits, y = logits[:, :130].contiguous(), y[:130]
    if bad == "nan":
        logits[3, 7] = logits[0, 70] = float("nan")
    elif bad == "inf":
        logits[y[9], 9], logits[(y[11] + 1) % 10, 11] = float("inf"), float("inf")
    else:
        logits[:, 12] = float("-inf")
    loss, acc = _scored(logits, y)
    ref_loss, ref_acc = _reference(logits, y)
    assert loss.isnan() and ref_loss.isnan()
    assert float(acc) == float(ref_acc)


def test_point_score_in_a_plane_with_ties_nan_rows_and_chunks_equals_the_generic_path():
    # a head that is 0 at theta0 and along d1, d2 on part of the plane: every logit 0 there (all tied)
    model, (x, y) = _mlp(nn.ReLU, width=40), _data()
    x[200] = float("nan")  # one sample with NaN logits everywhere (after the 64 rows the chain is checked on)
    theta0, d1, d2, coords = _plane(model)
    layout = Evaluator(model, (x, y)).layout
    head = layout.slice("7.weight").start
    theta0[head:], d1[head:], d2[head:] = 0.0, 0.0, 0.0
    assert _chain_used(model, (x, y), theta0, d1, d2, coords, loss_fn=fast_default_loss)
    ev = Evaluator(model, (x, y), loss_fn=fast_default_loss)
    ev.choose_rows(theta0, None)
    assert _scorer(ev, _chain(ev, "1", theta0)) is not None  # the point scores its own logits
    thetas = theta0 + coords[:, :1] * d1 + coords[:, 1:] * d2
    for rows in (None, 64):  # 64: chunks, scored by the evaluator
        fast = evaluate_plane(model, theta0, d1, d2, coords, (x, y), strategy="loop", loss_fn=fast_default_loss,
                              rows=rows)
        generic = evaluate_points(model, thetas, (x, y), strategy="loop", loss_fn=fast_default_loss, rows=rows)
        assert fast[0].isnan().all() and generic[0].isnan().all()
        assert torch.equal(fast[1], generic[1])
        assert torch.equal(fast[1], torch.full_like(fast[1], float((y == 0).float().mean())))
    # without the NaN sample: finite losses, log(3) everywhere (all tied)
    x[200] = 0.0
    fast = evaluate_plane(model, theta0, d1, d2, coords, (x, y), strategy="loop", loss_fn=fast_default_loss)
    assert torch.allclose(fast[0], torch.full_like(fast[0], torch.log(torch.tensor(3.0))), rtol=2e-6, atol=0)


def test_point_score_equals_the_generic_path_on_a_trained_like_plane():
    model, data = _mlp(nn.ReLU, width=40), _data()
    theta0, d1, d2, coords = _plane(model)
    fast = evaluate_plane(model, theta0, d1, d2, coords, data, strategy="loop", loss_fn=fast_default_loss)
    thetas = theta0 + coords[:, :1] * d1 + coords[:, 1:] * d2
    generic = evaluate_points(model, thetas, data, strategy="loop", loss_fn=fast_default_loss)
    _close(fast, generic, len(data[0]))


def test_targets_outside_the_classes_keep_the_evaluators_scoring():
    model, (x, y) = _mlp(), _data()
    y[3] = 3  # a 3-class model
    theta0, *_ = _plane(model)
    ev = Evaluator(model, (x, y), loss_fn=fast_default_loss)
    ev.choose_rows(theta0, None)
    assert _scorer(ev, _chain(ev, "1", theta0)) is None


def test_chain_points_go_to_the_workers_without_a_measured_choice(monkeypatch):
    from engine.probes.core import point_parallel

    model, data = _mlp(nn.ReLU, width=40), _data()
    theta0, d1, d2, coords = _plane(model)
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "2")
    monkeypatch.setattr(point_parallel, "_WHERE", {})
    ran_on = set()
    real = point_parallel.parallel_map

    def spy(fn, items, **kw):
        ran_on.add((getattr(fn, "on_workers", False), kw.get("key")))
        return real(fn, items, **kw)

    monkeypatch.setattr(point_parallel, "parallel_map", spy)
    fast = evaluate_plane(model, theta0, d1, d2, coords, data, strategy="loop", loss_fn=fast_default_loss)
    assert ran_on == {(True, None)} and point_parallel._WHERE == {}  # no key: straight to the workers
    thetas = theta0 + coords[:, :1] * d1 + coords[:, 1:] * d2
    _close(fast, evaluate_points(model, thetas, data, strategy="loop", loss_fn=fast_default_loss), len(data[0]))


def test_points_scored_together_equal_each_scored_alone():
    """ClassMajorScore.many on a block of points, some without a finite maximum (their accuracy is then
    argmax's, point by point), against the one-point scorer and the float64 reference."""
    logits, y = _logits_with_edge_cases()
    logits, y = logits[:, :130].contiguous(), y[:130]
    nan, inf, none = logits.clone(), logits.clone(), logits.clone()
    nan[3, 7] = float("nan")
    inf[y[9], 9] = float("inf")
    none[:, 12] = float("-inf")
    block = torch.stack([logits, nan, logits.flip(1), inf, none, logits * 0.5])
    loss, acc = ClassMajorScore(y, 10).many(block.clone())
    for j, one in enumerate(block):
        alone_loss, alone_acc = _scored(one, y)
        ref_loss, ref_acc = _reference(one, y)
        assert float(acc[j]) == float(alone_acc) == float(ref_acc), j
        if ref_loss.isnan():
            assert loss[j].isnan() and alone_loss.isnan(), j
        else:
            assert abs(float(loss[j] - ref_loss)) <= 2e-6 * (1 + abs(float(ref_loss))), j


def test_a_plane_runs_its_points_in_blocks_with_the_values_of_points_alone(monkeypatch):
    from engine.probes.core import point_parallel

    model, data = _mlp(nn.ReLU, width=40), _data()
    theta0, d1, d2, coords = _plane(model)
    sizes = []
    real = point_parallel._on_caller

    def spy(fn, items, lo, hi, progress, total):
        batch = fn.batch
        fn.batch = lambda part: sizes.append(len(part)) or batch(part)
        return real(fn, items, lo, hi, progress, total)

    monkeypatch.setattr(point_parallel, "_on_caller", spy)
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "1")
    blocks = evaluate_plane(model, theta0, d1, d2, coords, data, strategy="loop", loss_fn=fast_default_loss)
    assert sizes and max(sizes) == point_parallel.BATCH_ITEMS and sum(sizes) == len(coords)
    ev = Evaluator(model, data, loss_fn=fast_default_loss)
    ev.choose_rows(theta0, None)
    first = _first_layer(ev, theta0, d1, d2, coords)
    zs = [first.output(ev.layout.unflatten(t)) for t in (theta0, d1, d2)]
    point = mlp_plane_point(ev, first.path, theta0, d1, d2, zs, coords)
    alone = [point(a, b) for a, b in coords]
    # Each way a logit is within g = _logit_error(...) of its exact value, so the two differ by at most 2g,
    # a loss by twice that (cross-entropy is 2-Lipschitz in the logits' max-norm) plus the two scorings'
    # rounding (each within 2e-6 (1 + |loss|) of exact, above). The accuracy is an exact function of the
    # logits: a sample can count differently only where its top two exact logits are within 2g.
    thetas = theta0 + coords[:, :1] * d1 + coords[:, 1:] * d2
    errors = torch.tensor([_logit_error(model, t, data[0]) for t in thetas], dtype=torch.float64)
    loss = torch.stack([loss for loss, _ in alone]).double()
    assert torch.all((blocks[0] - loss).abs() <= 4 * errors + 4e-6 * (1 + loss.abs()))
    near = [_near_ties(model, t, data[0], 2 * g) for t, g in zip(thetas, errors.tolist())]
    gap = _count_gap(blocks[1], torch.stack([a for _, a in alone]), len(data[0]))  # compared as counts
    assert torch.all(gap <= torch.tensor(near, dtype=torch.float64))


def _linears(model, theta):
    """(weight, bias) of each Linear of the test MLP at the flat parameters ``theta``, float64."""
    params, at = {}, 0
    for name, p in model.named_parameters():
        params[name] = theta[at : at + p.numel()].view(p.shape).double()
        at += p.numel()
    return [(params[f"{i}.weight"], params[f"{i}.bias"]) for i, m in enumerate(model) if isinstance(m, nn.Linear)]


def _logit_error(model, theta, x) -> float:
    """A bound on any float32 logit's error at ``theta`` along the chain: ``2**-24 (terms + 8) A`` with
    ``A`` the largest logit of the absolute network (|W|, |b|, |x|; a ReLU never exceeds its input's
    magnitude), which bounds every partial sum; ``terms`` the summands per sum over the layers (the first
    layer's combination Z0 + a Z1 + b Z2 adds 3; the 8: a few roundings of the parameters' combination)."""
    h, terms = x.reshape(len(x), -1).double().abs(), 3
    for w, b in _linears(model, theta):
        h, terms = h @ w.abs().T + b.abs(), terms + w.shape[1] + 1
    return 2.0**-24 * (terms + 8) * float(h.max())


def _near_ties(model, theta, x, width: float) -> int:
    """Samples whose two largest exact (float64) logits at ``theta`` are within ``width`` (ReLU MLP)."""
    h = x.reshape(len(x), -1).double()
    layers = _linears(model, theta)
    for k, (w, b) in enumerate(layers):
        h = h @ w.T + b
        h = h.relu() if k < len(layers) - 1 else h
    top = h.topk(2, dim=1).values
    return int((top[:, 0] - top[:, 1] <= width).sum())
