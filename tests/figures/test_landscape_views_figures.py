"""Figures of issue 17's landscape views: curvature per layer, the trajectory's distance off the plane,
and a surface's topology (basins, persistence diagram, merge tree)."""

import dataclasses
import json

import numpy as np
import pytest
import torch
from torch import nn

from engine.figures.landscape import (
    per_layer_bars_figure,
    per_layer_training_figure,
    plane_distance_figure,
    surface_figure,
)
from engine.figures.landscape_topology import persistence_figure
from engine.probes.landscape import (
    loss_surface_2d,
    pca_directions,
    per_layer_hessian_over_training,
    surface_persistence,
    trajectory_plane,
)


@pytest.fixture(scope="module")
def setup():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))
    params = dict(model.named_parameters())
    g = torch.Generator().manual_seed(0)
    data = (torch.randn(32, 3, generator=g), torch.randint(0, 2, (32,), generator=g))
    return model, params, data


def _names(fig):
    return [t.name for t in fig.data]


def test_per_layer_figures_mark_two_over_eta(setup):
    model, params, data = setup
    path = [{k: v * s for k, v in params.items()} for s in (0.5, 0.8, 1.0)]
    res = per_layer_hessian_over_training(model, path, data, steps=[0, 5, 10], lr=0.05, n_probes=4)
    bars = per_layer_bars_figure(res, index=1)
    assert [t.type for t in bars.data] == ["bar", "bar"] and list(bars.data[0].y) == list(res.top[1])
    assert list(bars.data[0].x) == ["0 (20)", "2 (12)"]  # block name and its parameter count
    assert any("2/η = 40" in a.text for a in bars.layout.annotations)
    assert bars.layout.title.text == "Curvature per layer at step 5"
    assert per_layer_bars_figure(res, log_y=True).layout.yaxis.type == "log"
    lines = per_layer_training_figure(res)
    assert _names(lines)[-1] == "2 / η (edge of stability)" and list(lines.data[-1].y) == [40.0] * 3
    assert per_layer_training_figure(res, quantity="trace").layout.title.text == "Trace per layer over training"
    with pytest.raises(ValueError, match="quantity must be 'top' or 'trace'; got 'max'"):
        per_layer_training_figure(res, quantity="max")
    with pytest.raises(ValueError, match=r"index must be in \[-3, 2\] for 3 checkpoints; got 3"):
        per_layer_bars_figure(res, index=3)


def test_per_layer_axes_stay_on_the_blocks_when_two_over_eta_is_far_above(setup):
    """A linear axis stretched to 2/η would flatten every bar; it stops above the largest λ_max and says where
    2/η went. Near the blocks, or on a log axis, 2/η is drawn as a line."""
    model, params, data = setup
    path = [{k: v * s for k, v in params.items()} for s in (0.5, 1.0)]
    far = per_layer_hessian_over_training(model, path, data, steps=[0, 5], lr=1e-3, n_probes=4)  # 2/η = 2000
    top = float(far.top[1].max())
    assert 2000 > 3 * top > 0
    bars, lines = per_layer_bars_figure(far, index=1), per_layer_training_figure(far)
    assert bars.layout.yaxis.range[1] == pytest.approx(1.15 * top)
    assert lines.layout.yaxis.range[1] == pytest.approx(1.15 * float(far.top.max()))
    for fig in (bars, lines):
        (note,) = [a.text for a in fig.layout.annotations if a.text.startswith("2/η = 2000")]
        assert "above the axis" in note
    assert not bars.layout.shapes  # no line drawn off the axis
    logged = per_layer_bars_figure(far, index=1, log_y=True)
    assert logged.layout.yaxis.range is None and len(logged.layout.shapes) == 1
    near = per_layer_hessian_over_training(model, path, data, steps=[0, 5], lr=1.0 / top)  # 2/η = 2 λ_max
    assert per_layer_bars_figure(near, index=1).layout.yaxis.range is None
    assert per_layer_training_figure(near).layout.yaxis.range is None


def test_plane_distance_figure_and_the_trajectory_hover(setup):
    model, params, data = setup
    g = torch.Generator().manual_seed(3)
    path = [{k: v + 0.1 * t * torch.randn(v.shape, generator=g) for k, v in params.items()} for t in range(4)]
    path.append(params)
    pca = pca_directions(path)
    plane = trajectory_plane(path, pca.d1, pca.d2)
    surf = loss_surface_2d(model, params, data, pca.d1, pca.d2, resolution=5, trajectory=pca.coords)
    surf = dataclasses.replace(surf, off_plane=plane.off_plane, trajectory_distance=plane.distance,
                               plane_explained=plane.explained)
    fig = plane_distance_figure(surf, steps=[0, 1, 2, 3, 4])
    assert list(fig.data[0].y) == pytest.approx(list(plane.off_plane))
    share = np.asarray(fig.data[2].y, dtype=float)  # the lower panel: a share of the distance from the centre
    at_centre = plane.distance == 0  # the last checkpoint (the centre) and the first (the same weights)
    assert at_centre[-1] and np.isnan(share[at_centre]).all()  # undefined there, so not drawn
    assert share[~at_centre] == pytest.approx(plane.off_plane[~at_centre] / plane.distance[~at_centre])
    assert tuple(fig.layout.yaxis2.range) == (0, 1) and fig.data[2].yaxis == "y2"
    assert fig.layout.title.text == f"Trajectory vs the plane: the plane explains {plane.explained:.1%} of its variance"
    hover = next(t for t in surface_figure(surf).data if t.name == "trajectory")
    assert "off the plane" in hover.hovertemplate and np.asarray(hover.customdata).shape == (5, 3)
    bare = dataclasses.replace(surf, off_plane=None)
    assert "off the plane" not in next(t for t in surface_figure(bare).data if t.name == "trajectory").hovertemplate
    with pytest.raises(ValueError, match="needs a surface with a trajectory and its distances off the plane"):
        plane_distance_figure(bare)
    with pytest.raises(ValueError, match="got 2 steps for 5 trajectory checkpoints"):
        plane_distance_figure(surf, steps=[0, 1])


def test_persistence_figure_outlines_the_kept_basins():
    x = np.linspace(-2, 2, 41)
    xx, yy = np.meshgrid(x, x, indexing="ij")
    f = -np.exp(-((xx + 1) ** 2 + yy**2) / 0.25) - 0.5 * np.exp(-((xx - 1) ** 2 + yy**2) / 0.25)
    p = surface_persistence(f)
    fig = persistence_figure(p, threshold=0.1)
    outlines = [t for t in fig.data if t.type == "contour" and (t.name or "").startswith("basin")]
    assert len(outlines) == 2 and len(p.kept(0.1)) == 2
    assert fig.layout.title.text.startswith("Topology of the surface: 2 basins deeper than 0.1 in loss (2 minima")
    # a kept basin has one colour on the contours, in the persistence diagram (the global one: its triangle)
    on_contours = {t.hovertemplate.split("<br>")[0]: t.marker.color for t in fig.data
                   if t.type == "scatter" and t.xaxis == "x" and (t.hovertemplate or "").startswith("minimum ")}
    deep = next(t for t in fig.data if t.name == "kept basin")
    glob = next(t for t in fig.data if t.name == "global minimum (∞)")
    in_diagram = {f"minimum {int(k)}": c for k, c in zip(np.asarray(deep.customdata)[:, 0], deep.marker.color)}
    in_diagram[f"minimum {int(np.flatnonzero(~np.isfinite(p.death))[0])}"] = glob.marker.color[0]
    assert in_diagram == on_contours and len(set(on_contours.values())) == 2
    single = surface_persistence(xx**2 + yy**2)
    assert persistence_figure(single).layout.title.text.endswith("(1 minimum, 4-connected grid)")
    one = persistence_figure(p, threshold=float(p.persistence[1]))
    assert len([t for t in one.data if (t.name or "").startswith("basin")]) == 1
    json.loads(one.to_json())  # serialisable (infinite deaths are not sent to the browser)
    with pytest.raises(ValueError, match="threshold must be at least 0; got -0.5"):
        persistence_figure(p, threshold=-0.5)
