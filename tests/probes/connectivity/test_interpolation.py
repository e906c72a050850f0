"""Interpolation paths and barriers: exact endpoints, the three definitions, BN reset, layer-wise
LMC, naive vs aligned comparison, pairwise matrices and spawning."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

from engine.config import ArchSpec, DatasetSpec, OptimSpec, TrainSpec
from engine.nets import apply_permutation, build, permutation_spec, random_permutation
from engine.probes.connectivity import (
    BARRIER_DEFINITIONS,
    align_models,
    barrier,
    barrier_matrix,
    compare_paths,
    find_basins,
    instability_analysis,
    interpolate,
    layer_groups,
    layerwise_barriers,
    resolve_alphas,
)
from engine.probes.core import bn_reset_batches, reset_bn_stats


def _data(n=96, d=12, classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, d, generator=g), torch.randint(0, classes, (n,), generator=g)


def _mlp(seed=0, width=16, bn=False, trained_stats=True):
    m = build(ArchSpec(name="mlp", width=width, depth=2, options={"batchnorm": bn}), (1, 12), 3, seed=seed)
    if bn and trained_stats:  # give the running statistics non-trivial values
        x, _ = _data(seed=seed + 10)
        m.train()
        with torch.no_grad():
            m(x)
    return m.eval()


def _direct(model, state, data):
    """Loss and error of one state, computed the obvious way."""
    x, y = data
    with torch.no_grad():
        out = functional_call(model, {**dict(model.named_buffers()), **state}, (x,))
    return F.cross_entropy(out, y).item(), 1.0 - (out.argmax(-1) == y).float().mean().item()


# ---------------------------------------------------------------- barrier definitions

HAND_MADE = [
    # values, max_minus_linear, max_minus_mean, midpoint
    ([1.0, 3.0, 1.0], 2.0, 2.0, 2.0),
    ([0.0, 1.0, 2.0], 0.0, 1.0, 0.0),  # a straight line: no barrier above the line
    ([0.0, 2.0, 1.0, 1.0, 1.0], 1.75, 1.5, 0.5),
    ([2.0, 1.0, 0.0], 0.0, 1.0, 0.0),  # monotone decreasing: max is an endpoint
    ([1.0, 0.5, 1.0], 0.0, 0.0, -0.5),  # a valley: midpoint goes negative
]


@pytest.mark.parametrize("values, linear, mean, mid", HAND_MADE)
def test_barrier_definitions_on_hand_made_curves(values, linear, mean, mid):
    assert barrier(values, kind="max_minus_linear").value == pytest.approx(linear)
    assert barrier(values, kind="max_minus_mean").value == pytest.approx(mean)
    assert barrier(values, kind="midpoint").value == pytest.approx(mid)


def test_barrier_location_and_label_name_the_definition():
    b = barrier([0.0, 2.0, 1.0, 1.0, 1.0], kind="max_minus_linear", metric="error")
    assert b.alpha == pytest.approx(0.25)
    assert b.kind in b.label and "E(α)" in b.label
    for kind in BARRIER_DEFINITIONS:
        assert kind in barrier([0.0, 1.0, 0.0], kind=kind).label


def test_barrier_with_explicit_alphas_and_tensors():
    alphas = [0.0, 0.1, 0.5, 1.0]
    values = torch.tensor([1.0, 2.0, 1.5, 1.0])
    assert barrier(values, alphas=alphas).value == pytest.approx(1.0)
    assert barrier(values, alphas=alphas).alpha == pytest.approx(0.1)


@pytest.mark.parametrize("kwargs, match", [
    (dict(values=[1.0, 2.0, 1.0, 0.0], kind="midpoint"), "alpha=0.5"),
    (dict(values=[1.0, 2.0], alphas=[0.0, 0.5]), "from alpha=0 to alpha=1"),
    (dict(values=[1.0, float("nan"), 1.0]), "NaN"),
    (dict(values=[1.0, 2.0, 1.0], kind="max"), "kind must be one of"),
    (dict(values=[1.0, 2.0, 1.0], metric="acc"), "metric must be"),
    (dict(values=[1.0]), "at least 2 values"),
])
def test_barrier_errors(kwargs, match):
    values = kwargs.pop("values")
    with pytest.raises(ValueError, match=match):
        barrier(values, **kwargs)


def test_resolve_alphas():
    np.testing.assert_array_equal(resolve_alphas(3), [0.0, 0.5, 1.0])
    np.testing.assert_array_equal(resolve_alphas([-0.5, 0.0, 1.5]), [-0.5, 0.0, 1.5])
    with pytest.raises(ValueError, match="at least 2 grid points"):
        resolve_alphas(1)
    with pytest.raises(ValueError, match="strictly increasing"):
        resolve_alphas([0.0, 1.0, 0.5])


# ---------------------------------------------------------------- interpolation


@pytest.mark.parametrize("bn", [False, True])
def test_endpoints_equal_endpoint_models_exactly(bn):
    model, other = _mlp(0, bn=bn), _mlp(1, bn=bn)
    a, b = model.state_dict(), other.state_dict()
    data = _data()
    curve = interpolate(model, a, b, data, alphas=7, bn="running")
    for i, state in ((0, a), (-1, b)):
        loss, err = _direct(model, state, data)
        assert curve.loss[i] == loss
        assert curve.error[i] == err
    assert curve.split == "given" and curve.bn == "running" and curve.n_samples == 96


def test_endpoints_with_bn_reset_equal_the_reset_endpoints():
    model, other = _mlp(0, bn=True), _mlp(1, bn=True)
    a, b = model.state_dict(), other.state_dict()
    data = _data()
    curve = interpolate(model, a, b, data, alphas=5, bn="reset", bn_batches=3, bn_batch_size=32, seed=4)
    batches = bn_reset_batches(data[0], n_batches=3, batch_size=32, seed=4)
    for i, state in ((0, a), (-1, b)):
        params = {k: v for k, v in state.items() if k in dict(model.named_parameters())}
        reset = {**params, **reset_bn_stats(model, params, batches)}
        loss, err = _direct(model, reset, data)
        assert curve.loss[i] == pytest.approx(loss, rel=1e-6)
        assert curve.error[i] == pytest.approx(err)
    running = interpolate(model, a, b, data, alphas=5, bn="running")
    assert not np.allclose(curve.loss, running.loss)


def test_interpolation_of_a_model_with_itself_is_flat_and_barrier_free():
    model = _mlp(0)
    curve = interpolate(model, model.state_dict(), model.state_dict(), _data(), alphas=5)
    np.testing.assert_allclose(curve.loss, curve.loss[0], rtol=1e-6)
    assert abs(curve.barrier().value) < 1e-6


def test_interior_points_match_a_per_point_loop():
    model, other = _mlp(0), _mlp(1)
    a, b = model.state_dict(), other.state_dict()
    data = _data()
    curve = interpolate(model, a, b, data, alphas=[0.0, 0.3, 1.0, 1.25])
    for alpha, loss in zip(curve.alphas, curve.loss):
        mixed = {k: (1 - alpha) * a[k] + alpha * b[k] for k in a}
        assert loss == pytest.approx(_direct(model, mixed, data)[0], rel=1e-5)


@pytest.mark.parametrize("split_first", [False, True])
def test_all_alphas_go_through_one_evaluation_call(monkeypatch, split_first):
    """Either one evaluate_points call for all 25 alphas, or (first layer split off) one
    parallel map over them; never a call per alpha."""
    import engine.probes.core.path_eval as path_eval
    from engine.probes.core import plane_eval

    monkeypatch.setattr(plane_eval, "_COMBINE_CHOICE", {})
    monkeypatch.setattr(plane_eval, "_combining_faster", lambda first, params, rows: split_first)
    calls = []
    real_points, real_map = path_eval.evaluate_points, path_eval.points_with_buffers
    monkeypatch.setattr(path_eval, "evaluate_points", lambda *a, **k: calls.append(("points", len(a[1]))) or
                        real_points(*a, **k))
    monkeypatch.setattr(path_eval, "points_with_buffers", lambda ev, fn, items, buffers, **k:
                        calls.append(("line", len(items))) or real_map(ev, fn, items, buffers, **k))
    interpolate(_mlp(0), _mlp(0).state_dict(), _mlp(1).state_dict(), _data(), alphas=25)
    assert calls == [("line" if split_first else "points", 25)]


def _cnn_bn(seed):
    m = build(ArchSpec(name="cnn1d", width=8, depth=2, options={"batchnorm": True}), (1, 12), 3, seed=seed)
    m.train()
    with torch.no_grad():
        m(_data(seed=seed + 10)[0])
    return m.eval()


@pytest.mark.parametrize("make", [lambda s: _mlp(s), lambda s: _mlp(s, bn=True), _cnn_bn],
                         ids=["mlp", "mlp+bn", "cnn1d+bn"])
def test_the_first_layer_combined_along_the_line_gives_the_plain_curve(monkeypatch, make):
    """lerp(Z_a, Z_b, alpha) for the first layer's output: the same curve as evaluating every
    point in full (up to float rounding), each alpha with its own interpolated BN statistics,
    and the endpoints bit for bit."""
    import engine.probes.core.path_eval as path_eval
    from engine.probes.core import plane_eval

    model, other = make(0), make(1)
    a, b = model.state_dict(), other.state_dict()
    data = _data()
    # the built-in ConvNet's line otherwise runs as plain operations (conv_plane.py, tested there): the split here
    monkeypatch.setattr(path_eval, "conv_line_point", lambda *args, **kw: None)
    monkeypatch.setattr(plane_eval, "_COMBINE_CHOICE", {})
    monkeypatch.setattr(plane_eval, "_combining_faster", lambda first, params, rows: False)
    plain = interpolate(model, a, b, data, alphas=[-0.25, 0.0, 0.3, 0.5, 1.0, 1.4])
    monkeypatch.setattr(plane_eval, "_COMBINE_CHOICE", {})
    monkeypatch.setattr(plane_eval, "_combining_faster", lambda first, params, rows: True)
    monkeypatch.setattr(path_eval, "evaluate_states", lambda *a, **k: pytest.fail("the split was not used"))
    split = interpolate(model, a, b, data, alphas=[-0.25, 0.0, 0.3, 0.5, 1.0, 1.4])
    np.testing.assert_allclose(split.loss, plain.loss, rtol=1e-5)
    np.testing.assert_array_equal(split.error, plain.error)
    for i, state in ((1, a), (4, b)):
        loss, err = _direct(model, state, data)
        assert split.loss[i] == loss and split.error[i] == err


def test_bn_reset_is_a_cumulative_average_over_distinct_batches():
    model = _mlp(0, bn=True)
    x, _ = _data(n=200)
    batches = bn_reset_batches(x, n_batches=4, batch_size=50, seed=0)
    assert len(batches) == 4 and len({tuple(b[:, 0, 0].tolist()) for b in batches}) == 4
    ours = reset_bn_stats(model, dict(model.named_parameters()), batches)
    reference = copy.deepcopy(model)
    for m in reference.modules():
        if isinstance(m, torch.nn.BatchNorm1d):
            m.momentum = None
            m.reset_running_stats()
    reference.train()
    with torch.no_grad():
        for xb in batches:
            reference(xb)
    for name, buf in reference.named_buffers():
        torch.testing.assert_close(ours[name], buf)
    assert model.layers[0].norm.num_batches_tracked.item() == 1  # the caller's model is untouched
    with pytest.raises(ValueError, match="n_batches >= 1"):
        bn_reset_batches(x, n_batches=0)


def test_interpolate_errors():
    model = _mlp(0)
    with pytest.raises(ValueError, match="bn must be 'running'"):
        interpolate(model, model.state_dict(), model.state_dict(), _data(), bn="batch")
    with pytest.raises(ValueError, match="same architecture"):
        interpolate(model, model.state_dict(), {**model.state_dict(), "layers.0.linear.weight": torch.zeros(8, 12)},
                    _data())


# ---------------------------------------------------------------- layer-wise


def test_layer_groups_put_batchnorm_with_its_layer():
    groups = layer_groups(_mlp(0, bn=True))
    assert list(groups) == ["layers.0.linear", "layers.1.linear", "head"]
    assert "layers.0.norm.weight" in groups["layers.0.linear"]


def test_cumulative_last_group_is_the_whole_path():
    model, other = _mlp(0), _mlp(1)
    a, b = model.state_dict(), other.state_dict()
    data = _data()
    lw = layerwise_barriers(model, a, b, data, cumulative=True, alphas=5)
    full = interpolate(model, a, b, data, alphas=5)
    np.testing.assert_allclose(lw.curves_a[-1], full.loss, rtol=1e-6)
    np.testing.assert_allclose(lw.curves_b[-1], full.loss, rtol=1e-6)
    assert lw.from_a[-1] == pytest.approx(full.barrier().value, abs=1e-6)


def test_a_layer_that_is_equal_in_both_models_has_no_barrier():
    model, other = _mlp(0, bn=True), _mlp(1, bn=True)
    a = model.state_dict()
    b = {**other.state_dict(), **{k: v for k, v in a.items() if k.startswith("layers.1.")}}
    lw = layerwise_barriers(model, a, b, _data(), alphas=5)
    i = lw.groups.index("layers.1.linear")
    assert abs(lw.from_a[i]) < 1e-6 and abs(lw.from_b[i]) < 1e-6
    np.testing.assert_allclose(lw.curves_a[i], lw.curves_a[i][0], rtol=1e-6)


def test_layerwise_errors():
    model = _mlp(0)
    with pytest.raises(ValueError, match="group 'x' lists"):
        layerwise_barriers(model, model.state_dict(), model.state_dict(), _data(), groups={"x": ["nope"]})


# ---------------------------------------------------------------- naive vs aligned


def _planted_pair(bn=False, seed=3):
    model = _mlp(0, bn=bn)
    spec = permutation_spec(model)
    a = model.state_dict()
    return model, a, apply_permutation(spec, random_permutation(spec, a, seed=seed), a)


def test_compare_paths_aligned_planted_pair_is_flat():
    model, a, b = _planted_pair(bn=True)
    out = compare_paths(model, a, b, _data(), methods=("none", "weight", "activation"), bn=("running", "reset"),
                        alphas=5, bn_batches=2, bn_batch_size=32)
    assert set(out.curves) == {(m, bn, "given") for m in ("none", "weight", "activation")
                               for bn in ("running", "reset")}
    assert out.curves[("none", "running", "given")].barrier().value > 1e-3
    for m in ("weight", "activation"):
        assert out.curves[(m, "running", "given")].barrier().value < 1e-5
        assert out.check_max_diff[m] < 1e-4
    assert out.curves[("weight", "running", "given")].label == "weight matching"


def test_align_models_needs_data_for_activation_matching():
    model, a, b = _planted_pair()
    with pytest.raises(ValueError, match="activation matching needs data"):
        align_models(model, a, b, method="activation")
    with pytest.raises(ValueError, match="method must be one of"):
        align_models(model, a, b, method="magic")


# ---------------------------------------------------------------- populations


def test_find_basins_splits_two_blocks():
    m = np.array([[0, .01, 1, 1], [.01, 0, 1, 1], [1, 1, 0, .02], [1, 1, .02, 0]], dtype=float)
    order, basins, z, cut = find_basins(m)
    assert basins[0] == basins[1] != basins[2] == basins[3]
    assert 0.02 < cut < 1
    assert sorted(order.tolist()) == [0, 1, 2, 3]
    _, one, _, _ = find_basins(np.full((3, 3), 0.5) - 0.5 * np.eye(3))
    assert len(set(one)) == 1


def test_barrier_matrix_finds_permuted_copies():
    model, a, b = _planted_pair()
    c = _mlp(5).state_dict()
    result = barrier_matrix(model, {"a": a, "perm(a)": b, "c": c}, _data(), alphas=5, kind="midpoint")
    assert result.names == ("a", "perm(a)", "c")
    np.testing.assert_allclose(result.naive, result.naive.T)
    assert abs(result.naive[0, 1]) > 1e-3 and abs(result.aligned[0, 1]) < 1e-5  # untrained: naive dips
    assert np.all(np.diag(result.aligned) == 0)
    with pytest.raises(ValueError, match="at least two runs"):
        barrier_matrix(model, [a], _data())


# ---------------------------------------------------------------- spawning


def _spawn_spec(steps=12, optim="momentum"):
    return TrainSpec(dataset=DatasetSpec(name="moons", options={}), arch=ArchSpec(name="mlp", width=8, depth=1),
                     optim=OptimSpec(name=optim, lr=0.1), batch_size=16, steps=steps, seed=0,
                     checkpoints=[steps], device="cpu", eval_size=64)


def test_spawn_parent_matches_train_run_and_children_differ():
    from engine import data as zdata
    from engine.probes.connectivity import TrainState, spawn, train_steps
    from engine.train import BatchOrder, init_optim_state, train_run

    spec = _spawn_spec()
    ds = zdata.load(spec.dataset)
    saved = {}
    train_run(spec.model_copy(update={"checkpoints": [5]}), dataset=ds,
              on_checkpoint=lambda run, step, epoch, state, metrics: saved.__setitem__(step, state))
    model = build(spec.arch, ds.input_shape, ds.n_outputs, seed=spec.seed)
    params = {k: p.detach().clone() for k, p in model.named_parameters()}
    parent = TrainState(params, {}, init_optim_state(params, "momentum"))
    train_steps(model, parent, ds.x_train, ds.y_train, spec, BatchOrder(len(ds.x_train), 16, spec.seed), 5)
    for k, v in parent.state_dict().items():
        torch.testing.assert_close(v, saved[5][k])
    c1, c2 = spawn(model, parent, ds.x_train, ds.y_train, spec, seeds=(1, 2))
    assert c1.step == c2.step == spec.steps and parent.step == 5
    assert not torch.equal(c1.params["head.weight"], c2.params["head.weight"])
    with pytest.raises(ValueError, match="two different data-order seeds"):
        spawn(model, parent, ds.x_train, ds.y_train, spec, seeds=(1, 1))


def test_instability_analysis_shapes_and_errors():
    spec = _spawn_spec(steps=10)
    result = instability_analysis(spec, [0, 4, 10], alphas=5)
    assert result.spawn_steps.tolist() == [0, 4, 10]
    assert result.barrier.shape == (3,) and result.child_error.shape == (3, 2)
    assert result.barrier[-1] == pytest.approx(0.0, abs=1e-9)  # spawned at the end: both children are the parent
    assert result.kind == "max_minus_mean" and result.metric == "error"
    with pytest.raises(ValueError, match=r"spawn steps must lie in \[0, 10\]"):
        instability_analysis(spec, [11])


def test_chunked_evaluation_matches_one_batch(monkeypatch):
    import engine.probes.core.evaluator as evaluator

    model, other = _mlp(0, bn=True), _mlp(1, bn=True)
    data = _data(n=700)
    whole = interpolate(model, model.state_dict(), other.state_dict(), data, alphas=5)
    # tiny chunks that always measure faster: 256 + 256 + 188 rows
    monkeypatch.setattr(evaluator, "_CHUNK_FLOATS", 1)
    monkeypatch.setattr(evaluator, "_measured_rows", lambda ev, theta, small: small)
    chunked = interpolate(model, model.state_dict(), other.state_dict(), data, alphas=5)
    np.testing.assert_allclose(chunked.loss, whole.loss, rtol=1e-6)
    np.testing.assert_allclose(chunked.error, whole.error, atol=1e-6)


@pytest.mark.slow
def test_reproduction_weight_matching_on_mnist1d_mlps():
    """Entezari et al. / Ainsworth et al. on MNIST-1D: the naive barrier is clearly positive, weight
    matching halves it at width 256, and the aligned barrier shrinks with width (bench/connectivity_width.py
    runs the full table)."""
    from engine.data import load
    from engine.train import train_run

    ds = load("mnist1d")
    aligned, naive = {}, {}
    for width in (64, 256):
        states = []
        for seed in (0, 1):
            spec = TrainSpec(arch=ArchSpec(name="mlp", width=width, depth=3), optim=OptimSpec(name="momentum", lr=0.05),
                             batch_size=128, steps=1500, seed=seed, checkpoints=[1500], device="cpu")
            out = {}
            train_run(spec, dataset=ds,
                      on_checkpoint=lambda run, step, epoch, state, metrics, out=out: out.update(state))
            states.append(out)
        model = build(ArchSpec(name="mlp", width=width, depth=3), ds.input_shape, ds.n_outputs).eval()
        paths = compare_paths(model, *states, ds, methods=("none", "weight"), splits=("train",))
        naive[width] = paths.curves[("none", "running", "train")].barrier().value
        aligned[width] = paths.curves[("weight", "running", "train")].barrier().value
    assert min(naive.values()) > 0.1
    assert aligned[256] <= 0.5 * naive[256]
    assert aligned[256] < aligned[64]
