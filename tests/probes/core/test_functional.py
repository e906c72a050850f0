"""Functional evaluation: flat vectors, strategies, the first-layer plane path, BN modes."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from engine.probes.core import (
    Evaluator,
    ParamLayout,
    default_loss,
    evaluate_plane,
    evaluate_points,
    fast_default_loss,
    flatten_params,
    resolve_data,
    split_state,
    unflatten_params,
)
from engine.probes.core.cpu_kernels import cross_entropy_and_accuracy, with_cpu_kernels


class Wrapped(nn.Module):
    """Not a Sequential: flattens, then Linear -> tanh -> Linear."""

    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(36, 5)  # fan-in >= 32: the plane path reuses this layer
        self.fc2 = nn.Linear(5, 3)

    def forward(self, x):
        return self.fc2(torch.tanh(self.fc1(x.flatten(1))))


class TinyConv(nn.Module):
    def __init__(self, bn=False):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm1d(4) if bn else nn.Identity()
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(torch.relu(self.norm(self.conv(x))).mean(-1))


class WideConv(nn.Module):
    """A first conv with fan-in 33, wide enough for the plane path to reuse it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv1d(1, 4, 33, padding=16)
        self.head = nn.Linear(4, 3)

    def forward(self, x):
        return self.head(torch.relu(self.conv(x)).mean(-1))


def _data(n=40, shape=(1, 36), classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, *shape, generator=g), torch.randint(0, classes, (n,), generator=g)


def _reference(model, theta, x, y):
    """Slow obvious reference: copy the model, load each vector in place, run it."""
    losses, accs = [], []
    for t in theta:
        m = copy.deepcopy(model).eval()
        torch.nn.utils.vector_to_parameters(t, m.parameters())
        with torch.no_grad():
            out = m(x)
        losses.append(F.cross_entropy(out, y).item())
        accs.append((out.argmax(1) == y).float().mean().item())
    return torch.tensor(losses, dtype=torch.float64), torch.tensor(accs, dtype=torch.float64)


def test_layout_round_trip_and_views():
    model = Wrapped()
    params = dict(model.named_parameters())
    theta, layout = flatten_params(params)
    assert theta.shape == (layout.numel,) == (sum(p.numel() for p in params.values()),)
    back = unflatten_params(theta, layout)
    assert list(back) == list(params)
    for name in params:
        assert torch.equal(back[name], params[name].detach())
    assert back["fc1.weight"].data_ptr() == theta.data_ptr()  # a view, no copy
    batched = layout.unflatten(torch.stack([theta, 2 * theta]))  # (2, P) -> leading dim kept
    assert batched["fc2.weight"].shape == (2, 3, 5)
    assert theta[layout.slice("fc2.bias")].equal(params["fc2.bias"].detach())


def test_layout_errors_name_the_problem():
    layout = ParamLayout.from_module(Wrapped())
    with pytest.raises(ValueError, match=r"missing \['fc2.bias'\]"):
        layout.flatten({k: v for k, v in Wrapped().named_parameters() if k != "fc2.bias"})
    with pytest.raises(ValueError, match="has 3 entries; the layout has"):
        layout.unflatten(torch.zeros(3))
    with pytest.raises(ValueError, match="theta must have shape"):
        evaluate_points(Wrapped(), torch.zeros(layout.numel), _data())


@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_evaluate_points_matches_loading_each_vector(strategy):
    torch.manual_seed(0)
    model = Wrapped()
    x, y = _data()
    theta0, _ = flatten_params(dict(model.named_parameters()))
    theta = theta0 + 0.3 * torch.randn(7, theta0.numel(), generator=torch.Generator().manual_seed(1))
    loss, acc = evaluate_points(model, theta, (x, y), strategy=strategy, chunk=3)
    ref_loss, ref_acc = _reference(model, theta, x, y)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(acc, ref_acc)


@pytest.mark.parametrize("make", [Wrapped, TinyConv, WideConv, lambda: nn.Sequential(nn.Flatten(), nn.Linear(36, 4),
                                                                                        nn.ReLU(), nn.Linear(4, 3))])
@pytest.mark.parametrize("strategy", ["loop", "vmap"])
def test_evaluate_plane_equals_points(make, strategy):
    torch.manual_seed(0)
    model = make()
    x, y = _data()
    theta0, _ = flatten_params(dict(model.named_parameters()))
    gen = torch.Generator().manual_seed(2)
    d1, d2 = torch.randn(2, theta0.numel(), generator=gen) * 0.5
    coords = torch.tensor([[0.0, 0.0], [1.0, -0.5], [-2.0, 0.25], [0.3, 0.9]])
    loss, acc = evaluate_plane(model, theta0, d1, d2, coords, (x, y), strategy=strategy, chunk=2)
    theta = theta0 + coords[:, :1] * d1 + coords[:, 1:] * d2
    ref_loss, ref_acc = evaluate_points(model, theta, (x, y), strategy="loop")
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(acc, ref_acc)


@pytest.mark.parametrize("rows", [7, 16, 40])
def test_data_chunks_give_the_whole_set_numbers(rows):
    torch.manual_seed(0)
    model = WideConv()
    x, y = _data()
    theta0, _ = flatten_params(dict(model.named_parameters()))
    theta = theta0 + 0.2 * torch.randn(3, theta0.numel(), generator=torch.Generator().manual_seed(4))
    whole = evaluate_points(model, theta, (x, y), rows=len(x))
    chunked = evaluate_points(model, theta, (x, y), rows=rows)
    torch.testing.assert_close(chunked, whole, rtol=1e-6, atol=1e-7)
    d = torch.ones_like(theta0) * 0.1
    plane = evaluate_plane(model, theta0, d, -d, torch.tensor([[0.5, 0.25]]), (x, y), rows=rows)
    ref = evaluate_points(model, (theta0 + 0.25 * d)[None], (x, y), rows=len(x))
    torch.testing.assert_close(plane, ref, rtol=1e-6, atol=1e-7)



@pytest.mark.parametrize("narrow", [True, False], ids=["class-major logits", "row-major logits"])
def test_chunks_scored_once_or_one_by_one_give_the_whole_set_numbers(monkeypatch, narrow):
    """With the fast loss, the chunks' logits are joined and scored once (class-major when the narrow
    head gives them so); past SCORED_WHOLE_FLOATS each chunk is scored and weighted. Both equal one
    batch of all rows up to the order of the sum of the N per-sample terms: within 2 N eps (float32)."""
    from engine.probes.core import evaluator

    torch.manual_seed(0)
    model = WideConv()
    if not narrow:
        model.head = nn.Linear(4, 40)  # wider than cpu_kernels.NARROW_OUT: a row-major (N, C) output
    x, y = _data(n=40, classes=40 if not narrow else 3)
    theta0, _ = flatten_params(dict(model.named_parameters()))
    theta = theta0 + 0.2 * torch.randn(3, theta0.numel(), generator=torch.Generator().manual_seed(4))
    whole = evaluate_points(model, theta, (x, y), rows=len(x), loss_fn=fast_default_loss)
    tol = dict(rtol=2 * len(x) * torch.finfo(torch.float32).eps, atol=0.0)
    joined = []
    real_joined = evaluator._joined
    monkeypatch.setattr(evaluator, "_joined", lambda outs: joined.append([o.T.is_contiguous() for o in outs])
                        or real_joined(outs))
    once = evaluate_points(model, theta, (x, y), rows=7, loss_fn=fast_default_loss)
    assert len(joined) == len(theta), joined
    assert all(len(j) == 6 and all(j) == narrow for j in joined), joined
    monkeypatch.setattr(evaluator, "SCORED_WHOLE_FLOATS", 0)
    joined.clear()
    one_by_one = evaluate_points(model, theta, (x, y), rows=7, loss_fn=fast_default_loss)
    assert not joined
    for got in (once, one_by_one):
        torch.testing.assert_close(got[0], whole[0], **tol)
        torch.testing.assert_close(got[1], whole[1], **tol)

def test_measured_strategy_and_grid_row_reuse_match_the_plain_loop():
    torch.manual_seed(0)
    model = WideConv()
    x, y = _data()
    theta0, _ = flatten_params(dict(model.named_parameters()))
    gen = torch.Generator().manual_seed(3)
    d1, d2 = torch.randn(2, theta0.numel(), generator=gen) * 0.3
    axis = torch.linspace(-1, 1, 6)
    coords = torch.cartesian_prod(axis, axis)  # 36 points, rows of equal a: the row cache is used
    theta = theta0 + coords[:, :1] * d1 + coords[:, 1:] * d2
    ref = evaluate_points(model, theta, (x, y), strategy="loop")
    # chunk=4: 36 points are enough to time 4 looped against 4 vmapped points, then finish with the faster
    torch.testing.assert_close(evaluate_points(model, theta, (x, y), chunk=4), ref, rtol=1e-5, atol=1e-6)
    plane = evaluate_plane(model, theta0, d1, d2, coords, (x, y), chunk=4)
    torch.testing.assert_close(plane, ref, rtol=1e-5, atol=1e-6)


def test_first_layer_path_is_taken_for_linear_first_layers():
    from engine.probes.core import plane_eval
    model = Wrapped()
    x, y = _data()
    ev = Evaluator(model, (x, y))
    theta0 = ev.layout.flatten(dict(model.named_parameters()))
    d = torch.ones_like(theta0)
    first = plane_eval._first_layer(ev, theta0, d, d, torch.zeros(1, 2))
    assert first is not None and first.path == "fc1"
    assert first.inputs.shape == (40, 36)  # the flattened input, computed once


@pytest.mark.parametrize("faster", [True, False])
def test_a_thin_first_layer_is_split_off_only_when_combining_measured_faster(monkeypatch, faster):
    """Fan-in 3: whether combining beats recomputing depends on the machine, so it is timed
    (once per process and shape); the split follows that measurement."""
    from engine.probes.core import plane_eval
    timed = []
    monkeypatch.setattr(plane_eval, "_COMBINE_CHOICE", {})
    monkeypatch.setattr(plane_eval, "_combining_faster",
                        lambda first, params, rows: timed.append((first.inputs.shape, rows)) or faster)
    x, y = _data()
    ev = Evaluator(TinyConv(), (x, y))
    theta0 = ev.layout.flatten(dict(TinyConv().named_parameters()))
    for _ in range(2):
        thin = plane_eval._first_layer(ev, theta0, torch.ones_like(theta0), torch.ones_like(theta0), torch.zeros(1, 2))
        assert (thin is not None) == faster
    assert len(timed) == 1  # measured once per process and shape
    shape, rows = timed[0]
    assert shape[0] == len(x) and rows == min(ev.rows, len(x))  # on all rows, in the chunks points use


def test_the_first_layer_is_not_split_off_when_its_kept_outputs_exceed_the_memory_bound(monkeypatch):
    from engine.probes.core import plane_eval
    model = Wrapped()
    x, y = _data()
    ev = Evaluator(model, (x, y))
    theta0 = ev.layout.flatten(dict(model.named_parameters()))
    d = torch.ones_like(theta0)
    assert plane_eval._first_layer(ev, theta0, d, d, torch.zeros(1, 2)) is not None
    out_floats = 3 * len(x) * model.fc1.out_features  # Z0, Z1, Z2 for every row
    monkeypatch.setattr(plane_eval, "EVAL_MEMORY_BYTES", 4 * out_floats - 1)
    assert plane_eval._first_layer(ev, theta0, d, d, torch.zeros(1, 2)) is None


def test_batchnorm_running_by_default_and_batch_mode_never_updates_stats():
    torch.manual_seed(0)
    model = TinyConv(bn=True)
    model.norm.running_mean.fill_(0.5)
    model.norm.running_var.fill_(2.0)
    model.train()
    x, y = _data()
    theta0, _ = flatten_params(dict(model.named_parameters()))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loss_run, _ = evaluate_points(model, theta0[None], (x, y))
    loss_batch, _ = evaluate_points(model, theta0[None], (x, y), bn="batch")
    model.eval()
    with torch.no_grad():
        expect_run = F.cross_entropy(model(x), y).item()
        model.train()
        model.norm.momentum = 0.0  # train-mode forward without moving the stats
        expect_batch = F.cross_entropy(model(x), y).item()
    assert loss_run.item() == pytest.approx(expect_run, rel=1e-5)
    assert loss_batch.item() == pytest.approx(expect_batch, rel=1e-5)
    assert model.training  # the caller's module keeps its mode
    for k, v in before.items():
        if k != "norm.num_batches_tracked":
            assert torch.equal(model.state_dict()[k], v), k


def test_fast_default_loss_is_cross_entropy_under_grad_and_vmap():
    out = torch.randn(50, 7, generator=torch.Generator().manual_seed(0), requires_grad=True)
    y = torch.randint(0, 7, (50,), generator=torch.Generator().manual_seed(1))
    assert torch.equal(default_loss(out, y), F.cross_entropy(out, y))  # bit for bit
    torch.testing.assert_close(fast_default_loss(out, y), F.cross_entropy(out, y))
    g1, = torch.autograd.grad(fast_default_loss(out, y), out)
    g2, = torch.autograd.grad(F.cross_entropy(out, y), out)
    torch.testing.assert_close(g1, g2)
    batched = torch.func.vmap(fast_default_loss, in_dims=(0, None))(out.detach()[None].repeat(3, 1, 1), y)
    torch.testing.assert_close(batched, F.cross_entropy(out.detach(), y).repeat(3))


@pytest.mark.parametrize("layout", ["row-major", "class-major"])
def test_fused_score_is_cross_entropy_and_argmax_accuracy_with_its_tie_rule(layout):
    gen = torch.Generator().manual_seed(3)
    out = torch.randn(200, 5, generator=gen)
    out[:40] = 0.0  # every class tied: argmax says class 0
    out[40:60, 1] = out[40:60, 3] = out[40:60].amax(1) + 1.0  # classes 1 and 3 tied for the top: argmax says 1
    y = torch.randint(0, 5, (200,), generator=gen)
    y[:20], y[40:50], y[50:60] = 0, 1, 3
    if layout == "class-major":
        out = out.T.contiguous().T
    loss, acc = cross_entropy_and_accuracy(out, y)
    torch.testing.assert_close(loss, F.cross_entropy(out, y))
    assert acc.item() == pytest.approx((out.argmax(1) == y).float().mean().item(), abs=0)
    big = out * 1e4  # large logits: the shift keeps the exponentials finite
    torch.testing.assert_close(cross_entropy_and_accuracy(big, y)[0], F.cross_entropy(big, y))
    broken = out.clone()
    broken[60, 2] = float("nan")  # argmax picks the NaN; the loss is NaN, as F.cross_entropy's
    loss, acc = cross_entropy_and_accuracy(broken, y)
    assert loss.isnan() and F.cross_entropy(broken, y).isnan()
    assert acc.item() == pytest.approx((broken.argmax(1) == y).float().mean().item(), abs=0)


def test_cpu_kernels_give_the_same_outputs_and_leave_the_model_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(40, 64), nn.ReLU(), nn.Linear(64, 10))
    x = torch.randn(300, 40)
    fast = with_cpu_kernels(model)
    assert [type(m) for m in model] == [nn.Linear, nn.ReLU, nn.Linear]  # the caller's module is untouched
    assert type(fast[2]).__name__ == "NarrowLinear" and type(fast[0]) is nn.Linear
    assert fast[2].weight is model[2].weight  # tensors shared, not copied
    torch.testing.assert_close(fast(x), model(x))
    params = {k: v + 0.5 for k, v in model.named_parameters()}
    torch.testing.assert_close(torch.func.functional_call(fast, params, (x,)),
                               torch.func.functional_call(model, params, (x,)))


@pytest.mark.parametrize("length", [40, 41, 2, 3])
def test_pair_max_pool_is_max_pool_bit_for_bit(length):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.ReLU(), nn.MaxPool1d(2), nn.MaxPool1d(3), nn.Flatten())
    fast = with_cpu_kernels(model)
    assert type(fast[2]).__name__ == "PairMaxPool1d" and type(fast[3]) is nn.MaxPool1d  # only 2-wide pools
    x = torch.randn(50, 2, length)  # two channels: the conv stays PyTorch's (one channel would be a TapConv1d)
    x[0, 0, :2] = float("nan")  # NaN propagates the same way
    with torch.no_grad():
        pooled, reference = fast[:3](x), model[:3](x)
    assert torch.equal(pooled.isnan(), reference.isnan())
    assert torch.equal(pooled.nan_to_num(), reference.nan_to_num())


def test_regression_accuracy_is_nan_and_loss_is_mse():
    model = nn.Linear(4, 2)
    x = torch.randn(30, 4)
    y = torch.randn(30, 2)
    theta0, _ = flatten_params(dict(model.named_parameters()))
    loss, acc = evaluate_points(model, theta0[None], (x, y))
    with torch.no_grad():
        assert loss.item() == pytest.approx(F.mse_loss(model(x), y).item(), rel=1e-6)
    assert math.isnan(acc.item())


def test_data_forms_loader_and_dataset_like():
    x, y = _data(n=20)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=7)
    lx, ly = resolve_data(loader)
    assert torch.equal(lx, x) and torch.equal(ly, y)

    class DS:
        x_train, y_train, x_test, y_test = x[:10], y[:10], x[10:], y[10:]

    tx, ty = resolve_data(DS(), "test")
    assert torch.equal(tx, x[10:])
    sx, _ = resolve_data((x, y), n_samples=5, seed=3)
    sx2, _ = resolve_data((x, y), n_samples=5, seed=3)
    assert sx.shape[0] == 5 and torch.equal(sx, sx2)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'; got 'val'"):
        resolve_data(DS(), "val")


def test_split_state_separates_buffers():
    model = TinyConv(bn=True)
    params, buffers = split_state(model, model.state_dict())
    assert set(params) == {n for n, _ in model.named_parameters()}
    assert "norm.running_mean" in buffers
    with pytest.raises(ValueError, match="no entries for parameters"):
        split_state(model, {})


def test_data_rows_are_measured_once_and_give_the_same_values(monkeypatch):
    import engine.probes.core.evaluator as evaluator

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 40, 10))
    x, y = torch.randn(1200, 1, 40), torch.randint(0, 10, (1200,))
    theta, layout = flatten_params(dict(model.named_parameters()))
    whole = evaluate_points(model, theta[None], (x, y), rows=1200)
    monkeypatch.setattr(evaluator, "_CHUNK_FLOATS", 1)  # cache-sized chunks of 256 rows
    monkeypatch.setattr(evaluator, "_ROWS_CHOICE", {})
    seconds = {256: 1.0, 1200: 2.0}  # per chunk size, over all 1,200 rows: chunks win
    calls = []
    monkeypatch.setattr(evaluator, "_forward_seconds", lambda ev, params, m, r: calls.append((m, r)) or seconds[r])
    ev = Evaluator(model, (x, y), layout=layout)
    assert ev.choose_rows(theta) == 256
    assert ev.choose_rows(theta) == 256  # remembered: not timed again
    # a warm-up of each shape (one chunk; the whole set), then both timed on all the rows
    assert calls == [(256, 256), (1200, 1200), (1200, 256), (1200, 1200)] and len(evaluator._ROWS_CHOICE) == 1
    chunked = evaluate_points(model, theta[None], (x, y), strategy="loop")  # 256-row chunks, from the cache
    torch.testing.assert_close(chunked[0], whole[0], rtol=1e-6, atol=0)
    assert chunked[1].item() == pytest.approx(whole[1].item(), abs=1e-12)
    monkeypatch.setattr(evaluator, "_ROWS_CHOICE", {})
    seconds[256] = 1.9  # chunks no more than 10% faster: the whole set in one batch
    assert ev.choose_rows(theta) == 1200


def test_cache_sized_rows_hold_the_chunk_floats(monkeypatch):
    """Per row the leaves output 8 x 40 (conv) + 8 x 40 (ReLU) + 320 (flatten) + 10 (head) = 970 values."""
    import engine.probes.core.evaluator as evaluator

    model = nn.Sequential(nn.Conv1d(1, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 40, 10))
    x, y = torch.randn(1200, 1, 40), torch.randint(0, 10, (1200,))
    theta, layout = flatten_params(dict(model.named_parameters()))
    ev = Evaluator(model, (x, y), layout=layout)
    assert ev.activation_floats(theta) == 2 * 970 * 1200
    assert ev.cache_sized_rows(theta) == 1200  # 2^22 / 970 = 4,324 rows: all of them
    monkeypatch.setattr(evaluator, "_CHUNK_FLOATS", 970 * 300)
    assert ev.cache_sized_rows(theta) == 300
    monkeypatch.setattr(evaluator, "_CHUNK_FLOATS", 1)
    assert ev.cache_sized_rows(theta) == 256  # never fewer than 256 rows


def test_class_major_score_is_cross_entropy_with_infinite_logits():
    # class-major logits go through F.cross_entropy of a (1, C, N) image: its loss exactly where logits are infinite
    gen = torch.Generator().manual_seed(4)
    out = torch.randn(7, 50, generator=gen).T  # (50, 7) class-major
    y = torch.randint(0, 7, (50,), generator=gen)
    out[3, :] = float("-inf")  # a row of -inf: NaN
    out[5, 2] = float("inf")  # one +inf logit: argmax picks it
    out[6, y[6]] = float("inf")
    loss, acc = cross_entropy_and_accuracy(out, y)
    torch.testing.assert_close(loss, F.cross_entropy(out, y), equal_nan=True)
    assert acc.item() == pytest.approx((out.argmax(1) == y).float().mean().item(), abs=0)
    finite = out[7:]
    loss, acc = cross_entropy_and_accuracy(finite, y[7:])
    torch.testing.assert_close(loss, F.cross_entropy(finite, y[7:]))  # equal up to float rounding (one log_softmax)
    assert acc.item() == pytest.approx((finite.argmax(1) == y[7:]).float().mean().item(), abs=0)


@pytest.mark.parametrize("layout", ["contiguous", "class_major"])
def test_fast_losses_are_accurate_for_confident_large_logits(layout):
    """Logits near 1000 with the target's 12 above the rest: each loss is log(1 + sum_j e^(z_j - z_y)),
    about 5e-5, below half a float32 unit of 1000. As in F.cross_entropy the differences from the
    largest logit are exact (Sterbenz), the C exponentials and their sum round with relative error
    (C + 2) eps, the logarithm of a sum near 1 makes that an absolute error, and the mean adds
    log2(N) roundings of the loss's size. Adding the largest logit back before subtracting the
    target's instead rounds 1000 + 5e-5 first: up to half a unit of 1000 off in every loss."""
    g = torch.Generator().manual_seed(4)
    n, c = 64, 10
    z = 1000 + torch.rand(n, c, generator=g)
    y = torch.randint(0, c, (n,), generator=g)
    z.scatter_(1, y[:, None], z.amax(1, keepdim=True) + 12)
    exact = torch.log1p((z.double() - z.double().gather(1, y[:, None])).exp().sum(1) - 1).mean()
    if layout == "class_major":
        z = z.T.contiguous().T
    tol = (c + 2 + math.log2(n)) * torch.finfo(torch.float32).eps
    for loss in (fast_default_loss(z, y), cross_entropy_and_accuracy(z, y)[0], F.cross_entropy(z, y)):
        assert abs(float(loss) - float(exact)) <= tol, (float(loss), float(exact))
