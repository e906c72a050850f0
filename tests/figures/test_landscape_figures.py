"""Landscape figures build from probe results and carry the expected traces."""

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from torch import nn

from engine.figures.landscape import (
    intrinsic_dimension_figure,
    sharpness_figure,
    slices_figure,
    spectrum_figure,
    surface_figure,
)
from engine.probes.landscape import (
    IntrinsicDimension,
    Sharpness,
    hessian_spectral_density,
    hessian_top_eigs,
    hessian_trace,
    loss_surface_1d,
    loss_surface_2d,
    random_direction,
)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))
    params = dict(model.named_parameters())
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(32, 3, generator=g), torch.randint(0, 2, (32,), generator=g))
    return model, params, data


def _types(fig):
    return [type(t).__name__ for t in fig.data]


def test_surface_figure_has_surface_contour_and_trajectory(setup):
    model, params, data = setup
    surf = loss_surface_2d(model, params, data, random_direction(params, seed=1), random_direction(params, seed=2),
                           resolution=5, trajectory=np.array([[-0.5, -0.5], [0.0, 0.0]]))
    fig = surface_figure(surf, log_scale=True)
    assert isinstance(fig, go.Figure)
    types = _types(fig)
    assert {"Surface", "Contour", "Scatter", "Scatter3d"} <= set(types)
    surface = fig.data[types.index("Surface")]
    np.testing.assert_allclose(np.asarray(surface.z), np.log10(surf.loss.T))
    assert "loss=" in surface.hovertemplate
    assert "BN: running" in fig.layout.title.text
    plain = surface_figure(surf, trajectory=np.zeros((0, 2)), metric="accuracy")
    assert "Scatter3d" not in _types(plain)  # an empty trajectory overrides the stored one
    with pytest.raises(ValueError, match="metric must be 'loss' or 'accuracy'"):
        surface_figure(surf, metric="acc")


def test_slices_figure_from_1d_and_2d(setup):
    model, params, data = setup
    d = random_direction(params, seed=1)
    line = loss_surface_1d(model, params, data, d, resolution=7)
    surf = loss_surface_2d(model, params, data, d, random_direction(params, seed=2), resolution=5)
    fig = slices_figure([line, surf], labels=["line", "plane"])
    names = [t.name for t in fig.data]
    assert "line loss" in names and "plane: a (b=0) loss" in names and "plane: b (a=0) acc" in names
    with pytest.raises(ValueError, match="got 1 labels for 2 surfaces"):
        slices_figure([line, surf], labels=["x"])
    with pytest.raises(ValueError, match="needs a 2D surface"):
        surface_figure(line)


def test_spectrum_figure_marks_top_eigs_and_trace(setup):
    model, params, data = setup
    dens = hessian_spectral_density(model, params, data, n_iter=10, n_runs=2)
    top = hessian_top_eigs(model, params, data, k=2)
    tr = hessian_trace(model, params, data, n_probes=10)
    fig = spectrum_figure(dens, top=top, trace=tr)
    assert "trace =" in fig.layout.title.text and "Hutchinson" in fig.layout.title.text
    markers = [t for t in fig.data if t.name in ("λ1", "λ2")]
    assert len(markers) == 2 and markers[0].x[0] == pytest.approx(top.eigenvalues[0])
    assert fig.layout.yaxis.type == "log"
    assert "SLQ" in spectrum_figure(dens).layout.title.text


def test_sharpness_figure_draws_edge_of_stability_line():
    sharp = Sharpness(np.array([0, 10, 20]), np.array([[1.0, 0.5], [3.0, 1.0], [39.0, 5.0]]),
                      np.full(3, 0.05), np.full(3, 40.0), np.array([20, 8, 8]), 100, "running", 0.1)
    fig = sharpness_figure(sharp)
    names = [t.name for t in fig.data]
    assert names == ["λ1", "λ2", "2 / η"]
    np.testing.assert_allclose(fig.data[2].y, 40.0)


def test_intrinsic_dimension_figure_marks_d_int90():
    res = IntrinsicDimension(np.array([1, 2, 4, 8]), np.array([[0.2, 0.5, 0.92, 0.99], [0.3, 0.6, 0.9, 0.98]]),
                             1.0, "accuracy", "dense", 100, (0, 1), 10, 0.1, 1.0)
    assert res.d_int90 == 4
    fig = intrinsic_dimension_figure(res)
    assert any(t.name == "d_int90 = 4" for t in fig.data)
    assert "d_int90 = 4" in fig.layout.title.text
    assert fig.layout.xaxis.type == "log"
