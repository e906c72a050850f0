"""Connectivity figures: every barrier names its definition; one figure per result type."""

import dataclasses

import numpy as np
import pytest
import torch

from engine.config import ArchSpec
from engine.figures.connectivity import (
    barrier_matrix_figure,
    barrier_summary_figure,
    instability_figure,
    interpolation_figure,
    layerwise_figure,
    merge_figure,
    singular_alignment_figure,
    singular_cosine_figure,
)
from engine.nets import apply_permutation, build, permutation_spec, random_permutation
from engine.probes.connectivity import (
    BARRIER_DEFINITIONS,
    BarrierMatrix,
    Instability,
    InterpolationCurve,
    compare_paths,
    find_basins,
    layerwise_barriers,
    merge_models,
    singular_vector_alignment,
    weight_matching,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _curve(label="naive", split="train", bn="running", bump=1.0):
    a = np.linspace(0, 1, 5)
    loss = 1.0 + bump * np.sin(np.pi * a)
    return InterpolationCurve(a, loss, 0.1 + 0.1 * np.sin(np.pi * a), split, bn, 100, label)


def _texts(fig) -> str:
    parts = [str(fig.layout.title.text)] + [str(a.text) for a in fig.layout.annotations]
    parts += [str(t.name) for t in fig.data] + [str(getattr(t, "hovertemplate", "")) for t in fig.data]
    return " ".join(parts)


@pytest.mark.parametrize("kind", list(BARRIER_DEFINITIONS))
def test_interpolation_figure_names_the_barrier_definition(kind):
    fig = interpolation_figure([_curve(), _curve("weight matching", "test", "reset", bump=0.1)], kind=kind)
    text = _texts(fig)
    assert BARRIER_DEFINITIONS[kind] in text
    assert "loss barrier 1" in text and "BN reset" in text
    barrier_marks = [t for t in fig.data if t.line.dash == "dot"]
    assert len(barrier_marks) == 4  # one per curve and metric
    top = max(barrier_marks, key=lambda t: t.y[1])
    assert top.y[1] == pytest.approx(2.0)


def test_interpolation_figure_skips_error_for_regression_and_rejects_bad_metrics():
    regression = InterpolationCurve(np.linspace(0, 1, 3), np.array([1.0, 2.0, 1.0]), np.full(3, np.nan),
                                    "train", "running", 10, "naive")
    fig = interpolation_figure(regression)
    assert len(fig.layout.annotations) == 1
    with pytest.raises(ValueError, match="metrics must be 'loss' or 'error'"):
        interpolation_figure(_curve(), metrics=("acc",))
    with pytest.raises(ValueError, match="at least one curve"):
        interpolation_figure([])


def _pair():
    model = build(ArchSpec(name="mlp", width=6, depth=2), (1, 5), 3, seed=0).eval()
    spec = permutation_spec(model)
    a = model.state_dict()
    b = apply_permutation(spec, random_permutation(spec, a, seed=1), a)
    g = torch.Generator().manual_seed(0)
    return model, spec, a, b, (torch.randn(40, 1, 5, generator=g), torch.randint(0, 3, (40,), generator=g))


def test_comparison_layerwise_singular_and_merge_figures():
    model, spec, a, b, data = _pair()
    comparison = compare_paths(model, a, b, data, alphas=5)
    assert len(interpolation_figure(comparison).data) > 0
    summary = barrier_summary_figure(comparison)
    assert "max_minus_linear" in summary.layout.title.text and len(summary.data) == 2
    lw = layerwise_barriers(model, a, b, data, alphas=5)
    fig = layerwise_figure(lw)
    assert list(fig.data[0].x) == list(lw.groups) and "max over α" in fig.layout.title.text
    said = " ".join(a.text for a in fig.layout.annotations)
    assert ("every barrier is 0" in said) == bool((lw.from_a <= 1e-9).all() and (lw.from_b <= 1e-9).all())
    flat = dataclasses.replace(lw, from_a=np.zeros_like(lw.from_a), from_b=np.zeros_like(lw.from_b))
    # an empty-looking chart explains itself
    assert "every barrier is 0" in layerwise_figure(flat).layout.annotations[0].text
    sv = singular_vector_alignment(a, b, weight_matching(a, b, spec), spec)
    fig = singular_alignment_figure(sv, side="right")
    assert fig.data[0].z.shape == (3, 6)
    with pytest.raises(ValueError, match="side must be"):
        singular_alignment_figure(sv, side="up")
    fig = singular_cosine_figure(sv, "layers.1.linear.weight")
    assert len(fig.data) == 4 and np.allclose(fig.data[1].y, 1.0, atol=1e-6)  # after: aligned exactly
    with pytest.raises(ValueError, match="is not in the result"):
        singular_cosine_figure(sv, "nope")
    merged = merge_models(model, [a, b], data, align="weight")
    fig = merge_figure([merged, merge_models(model, [a, b], data, align="none")])
    assert len(fig.data) == 3 and "align weight" in fig.data[1].name


def test_barrier_matrix_and_instability_figures():
    m = np.array([[0, .01, 1.0], [.01, 0, 1.0], [1.0, 1.0, 0]])
    order, basins, z, cut = find_basins(m)
    result = BarrierMatrix(("r0", "r1", "r2"), m * 2, m, "max_minus_linear", "loss", "weight", "test", "running",
                           order, basins, cut, z)
    fig = barrier_matrix_figure(result)
    assert len(fig.data) == 2 and "basin" in fig.data[0].x[0]
    assert "max over α" in fig.layout.title.text
    naive_only = BarrierMatrix(("r0", "r1", "r2"), m, None, "midpoint", "error", "none", "test", "running",
                               order, basins, cut, z)
    assert len(barrier_matrix_figure(naive_only).data) == 1
    with pytest.raises(ValueError, match="no aligned barriers"):
        barrier_matrix_figure(naive_only, which="aligned")
    inst = Instability(np.array([0, 10, 100]), np.array([0.3, 0.1, 0.0]), "max_minus_mean", "error", "test",
                       np.zeros((3, 2)), (), (1, 2))
    fig = instability_figure(inst, log_x=True)
    assert list(fig.data[0].x) == [10, 100] and "E(0)" in fig.layout.title.text
