"""Zoo distances against slow obvious references, their symmetry and invariances, and the
shape metric against a written-out netrep computation."""

import math

import numpy as np
import pytest
import torch
from torch.func import functional_call

from engine.config import ArchSpec
from engine.nets import apply_permutation, build, permutation_spec, random_permutation
from engine.probes import (
    ZOO_METRICS,
    ZooDistances,
    linear_cka,
    model_view,
    pair_distances,
    pairwise_distances,
    shape_metric,
)
from engine.probes.connectivity import weight_matching


def _mlp(seed=0, width=6, depth=2):
    return build(ArchSpec(name="mlp", width=width, depth=depth), (1, 5), 3, seed=seed).eval()


def _data(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 5, generator=g), torch.randint(0, 3, (n,), generator=g)


def _netrep_reference(x, y, alpha):
    """netrep's LinearMetric(alpha, center_columns=True, zero_pad=True, score_method='angular'), step by step."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    w = max(x.shape[1], y.shape[1])
    x = np.pad(x, ((0, 0), (0, w - x.shape[1])))
    y = np.pad(y, ((0, 0), (0, w - y.shape[1])))

    def whiten(m):
        if alpha > 1 - 1e-7:
            return m
        lam, v = np.linalg.eigh(m.T @ m)
        lam = np.maximum(lam, 1e-7)
        d = alpha + (1 - alpha) * lam ** -0.5
        new_var = np.sum(alpha**2 * lam + 2 * alpha * (1 - alpha) * lam**0.5 + (1 - alpha) ** 2)
        d *= np.sqrt(lam.sum() / new_var)
        return m @ ((v * d) @ v.T)

    xw, yw = whiten(x - x.mean(0)), whiten(y - y.mean(0))
    u, _, vt = np.linalg.svd(xw.T @ yw)
    tx, ty = xw @ u, yw @ vt.T  # both rotated into the aligned space
    corr = np.dot(tx.ravel(), ty.ravel()) / (np.linalg.norm(tx) * np.linalg.norm(ty))
    return float(np.arccos(np.clip(corr, -1, 1)))


@pytest.mark.parametrize("alpha", [1.0, 0.5, 0.0])
@pytest.mark.parametrize("widths", [(7, 7), (5, 9)])
def test_shape_metric_matches_netrep_written_out(alpha, widths):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(40, widths[0]))
    y = x[:, : min(widths)] @ rng.normal(size=(min(widths), widths[1])) + 0.3 * rng.normal(size=(40, widths[1]))
    assert shape_metric(x, y, alpha=alpha) == pytest.approx(_netrep_reference(x, y, alpha), abs=1e-8)


def test_shape_metric_invariances_and_errors():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 6))
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert shape_metric(x, 2.5 * x @ q + 1.0) == pytest.approx(0.0, abs=1e-6)
    assert 0 < shape_metric(x, rng.normal(size=(30, 6))) <= math.pi / 2
    with pytest.raises(ValueError, match=r"alpha must lie in \[0, 1\]"):
        shape_metric(x, x, alpha=1.5)
    with pytest.raises(ValueError, match="same inputs"):
        shape_metric(x, x[:10])
    with pytest.raises(ValueError, match="zero variance"):
        shape_metric(np.ones((5, 2)), x[:5])


def _slow_weight_distance(a, b_aligned, names):
    total, count = 0.0, 0
    for n in names:
        for va, vb in zip(a[n].reshape(-1).tolist(), b_aligned[n].reshape(-1).tolist()):
            total += (va - vb) ** 2
            count += 1
    return math.sqrt(total / count)


def test_each_distance_against_a_slow_reference():
    model, data = _mlp(0), _data()
    a, b = _mlp(1).state_dict(), _mlp(2).state_dict()
    va, vb = model_view(model, a, data, max_samples=None), model_view(model, b, data, max_samples=None)
    d = pair_distances(model, va, vb, data, tuple(ZOO_METRICS), alphas=5)
    spec = permutation_spec(model)
    al = weight_matching(a, b, spec)
    b_al = apply_permutation(spec, al.as_tensors(), b)
    names = [n for n, _ in model.named_parameters()]
    assert d["weight"] == pytest.approx(_slow_weight_distance(a, b_al, names), rel=1e-9)
    x, y = data
    curve_losses = []
    for t in np.linspace(0, 1, 5):
        st = {k: (1 - t) * a[k] + t * b_al[k] for k in a}
        out = functional_call(model, st, (x,))
        curve_losses.append(float(torch.nn.functional.cross_entropy(out, y)))
    line = np.linspace(curve_losses[0], curve_losses[-1], 5)
    assert d["barrier"] == pytest.approx(max(c - s for c, s in zip(curve_losses, line)), abs=1e-5)
    pa, pb = (functional_call(model, s, (x,)).argmax(1) for s in (a, b))
    assert d["disagreement"] == pytest.approx(sum(int(p != q) for p, q in zip(pa, pb)) / len(x))
    layers = [n for n in va.activations if n in vb.activations]
    ckas = [linear_cka(va.activations[n], vb.activations[n]) for n in layers]
    assert d["cka"] == pytest.approx(1 - sum(ckas) / len(ckas))
    shapes = [_netrep_reference(va.activations[n].numpy(), vb.activations[n].numpy(), 1.0) for n in layers]
    assert d["procrustes"] == pytest.approx(sum(shapes) / len(shapes), abs=1e-7)


@pytest.mark.parametrize("metric", list(ZOO_METRICS))
def test_matrix_is_symmetric_with_zero_diagonal_and_self_distance_zero(metric):
    models = {"a": _mlp(1), "b": _mlp(2), "a again": _mlp(1)}
    d = pairwise_distances(models, _data(), metric=metric, alphas=5)
    assert isinstance(d, ZooDistances) and d.labels == ("a", "b", "a again")
    np.testing.assert_allclose(d.matrix, d.matrix.T)
    np.testing.assert_array_equal(np.diag(d.matrix), 0.0)
    assert d.matrix[0, 2] == pytest.approx(0.0, abs=1e-6)  # a model against an identical copy
    assert d.missing == 0 and metric.split()[0] in d.description or d.description


def test_weight_distance_after_alignment_is_invariant_to_permuting_a_model():
    # One hidden layer: weight matching solves one assignment problem exactly, so the aligned
    # distance is a function of the models' functions' classes. (With more layers the coordinate
    # descent finds a local optimum that may depend on the starting order.)
    model, data = _mlp(0, width=8, depth=1), _data()
    a, b = _mlp(1, width=8, depth=1).state_dict(), _mlp(2, width=8, depth=1).state_dict()
    spec = permutation_spec(model)
    b_perm = apply_permutation(spec, random_permutation(spec, b, seed=5), b)
    va, vb, vp = (model_view(model, s, data, activations=False) for s in (a, b, b_perm))
    d = pair_distances(model, va, vb, data, ("weight", "barrier"), alphas=5)
    dp = pair_distances(model, va, vp, data, ("weight", "barrier"), alphas=5)
    assert dp["weight"] == pytest.approx(d["weight"], rel=1e-6)
    assert dp["barrier"] == pytest.approx(d["barrier"], abs=1e-5)
    # and a permuted copy of A is at distance 0 after alignment, not before
    va_perm = model_view(model, apply_permutation(spec, random_permutation(spec, a, seed=1), a), data,
                         activations=False)
    assert pair_distances(model, va, va_perm, data, ("weight",))["weight"] == pytest.approx(0.0, abs=1e-6)
    assert pair_distances(model, va, va_perm, data, ("weight",), align="none")["weight"] > 1e-3


def test_cka_distance_is_invariant_to_orthogonal_transforms_of_a_representation():
    model, data = _mlp(0), _data()
    va = model_view(model, _mlp(1).state_dict(), data)
    vb = model_view(model, _mlp(2).state_dict(), data)
    g = torch.Generator().manual_seed(0)
    rotated = {}
    for n, t in vb.activations.items():
        q, _ = torch.linalg.qr(torch.randn(t.shape[1], t.shape[1], generator=g, dtype=torch.float64))
        rotated[n] = t @ q
    vr = type(vb)(state=vb.state, predictions=vb.predictions, activations=rotated)
    for metric in ("cka", "procrustes"):
        assert pair_distances(model, va, vr, data, (metric,))[metric] == pytest.approx(
            pair_distances(model, va, vb, data, (metric,))[metric], abs=1e-9)


def test_errors_say_what_was_wrong():
    model, data = _mlp(0), _data()
    va = model_view(model, _mlp(1).state_dict(), data)
    wide = _mlp(1, width=9)
    vw = model_view(wide, wide.state_dict(), data)
    with pytest.raises(ValueError, match="one architecture; these differ in"):
        pair_distances(model, va, vw, data, ("weight",))
    assert pair_distances(model, va, vw, data, ("cka",))["cka"] >= 0  # representations compare across widths
    with pytest.raises(ValueError, match="metrics must be among"):
        pair_distances(model, va, va, data, ("euclid",))
    with pytest.raises(ValueError, match="metric must be one of"):
        pairwise_distances([_mlp(1), _mlp(2)], data, metric="l2")
    with pytest.raises(ValueError, match="at least two models; got 1"):
        pairwise_distances([_mlp(1)], data, metric="cka")
    x, _ = data
    reg = (x, torch.randn(len(x), 3))
    vr = model_view(model, _mlp(1).state_dict(), reg)
    with pytest.raises(ValueError, match="real-valued"):
        pair_distances(model, vr, vr, reg, ("disagreement",))
