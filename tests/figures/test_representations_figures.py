"""Smoke tests: each representation figure builds from a real probe result."""

import numpy as np
import plotly.graph_objects as go
import pytest

from engine.figures.representations import (
    dimension_figure,
    neural_collapse_figure,
    neuron_matching_figure,
    projection_figure,
    similarity_heatmap,
)
from engine.probes.representations import (
    aligned_projection,
    layer_dimensions,
    neural_collapse_over_training,
    neuron_matching,
    project,
    similarity_grid,
    similarity_over_training,
)

RNG = np.random.default_rng(0)
LAYERS = {f"l{i}": RNG.normal(size=(120, 6 + i)) for i in range(3)}
LABELS = np.arange(120) % 3


@pytest.mark.parametrize("metric", ["linear_cka", "procrustes"])
def test_similarity_heatmap(metric):
    fig = similarity_heatmap(similarity_grid(LAYERS, None, metric))
    assert isinstance(fig, go.Figure) and fig.data[0].z.shape == (3, 3)
    assert list(fig.data[1].x) == ["l0", "l1", "l2"]  # the diagonal is each row's best match
    ckpt = similarity_heatmap(similarity_over_training([LAYERS, LAYERS]))
    assert ckpt.layout.xaxis.title.text == "checkpoint"


def test_projection_scatter_and_animation():
    proj = project(LAYERS["l2"], "pca", labels=LABELS, max_points=60)
    fig = projection_figure(proj, LABELS, class_names=["a", "b", "c"], hover_text=[f"x{i}" for i in range(120)])
    assert [t.name for t in fig.data] == ["a", "b", "c"] and "60 of 120 points" in fig.layout.title.text
    assert sum(len(t.x) for t in fig.data) == 60 and fig.data[0].text[0].startswith("sample ")
    frames = aligned_projection([LAYERS["l2"], 2 * LAYERS["l2"]], "pca", checkpoint_labels=["10", "20"])
    anim = projection_figure(frames, LABELS)
    assert len(anim.frames) == 2 and [s.label for s in anim.layout.sliders[0].steps] == ["10", "20"]
    with pytest.raises(ValueError, match="one entry per input row"):
        projection_figure(proj, LABELS[:7])


def test_neural_collapse_dimension_and_matching_figures():
    nc = neural_collapse_over_training([LAYERS["l0"], LAYERS["l0"] * 0.1], LABELS, steps=[1, 2])
    assert len(neural_collapse_figure(nc).data) == 6
    assert len(dimension_figure(layer_dimensions(LAYERS)).data) == 4
    m = neuron_matching(LAYERS["l1"], LAYERS["l2"])
    fig = neuron_matching_figure({"l1": m, "l1 again": m})
    assert len(fig.data) == 2 and len(fig.data[0].y) == 7
