"""Figures for representation geometry: similarity heatmaps, projections, collapse, dimension.

Every function takes a probe result (see :mod:`engine.probes.representations.similarity_grid`,
:mod:`engine.probes.representations.projection`, :mod:`engine.probes.representations.geometry`) and returns a
:class:`plotly.graph_objects.Figure`, used as is by the dashboard and the HTML report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.figures.style import PALETTE, TEMPLATE, escape
from engine.probes.representations import (
    AlignedProjection,
    LayerDimensions,
    NeuralCollapse,
    NeuronMatching,
    Projection,
    SimilarityGrid,
)

__all__ = [
    "dimension_figure",
    "neural_collapse_figure",
    "neuron_matching_figure",
    "projection_figure",
    "similarity_heatmap",
]

_METRIC_TITLES = {
    "linear_cka": "linear CKA", "debiased_cka": "debiased CKA", "rbf_cka": "RBF CKA",
    "procrustes": "Procrustes distance", "svcca": "SVCCA", "pwcca": "PWCCA", "rsa": "RSA",
    "trsa": "tRSA",
}


def similarity_heatmap(grid: SimilarityGrid, *, title: str | None = None, mark_best: bool = True) -> go.Figure:
    """Heatmap of a layer x layer (or layer x checkpoint) similarity grid.

    Parameters
    ----------
    grid : SimilarityGrid
    title : str, optional
        Defaults to the metric's name.
    mark_best : bool, default True
        Outline each row's most similar column (Kornblith et al.'s layer correspondence).
    """
    name = _METRIC_TITLES.get(grid.metric, grid.metric)
    cka_like = grid.metric.endswith("cka") or grid.metric in ("svcca", "pwcca")
    fig = go.Figure(go.Heatmap(
        z=grid.values, x=[escape(c) for c in grid.cols], y=[escape(r) for r in grid.rows],
        colorscale="Viridis", reversescale=not grid.larger_is_similar,
        zmin=0.0 if cka_like else None, zmax=1.0 if cka_like else None,
        colorbar={"title": {"text": name}},
        hovertemplate=f"{grid.row_title} %{{y}}<br>{grid.col_title} %{{x}}<br>{name} %{{z:.4f}}<extra></extra>",
    ))
    if mark_best and grid.values.size:
        best = grid.best_match()
        fig.add_trace(go.Scatter(
            x=[escape(grid.cols[j]) for j in best], y=[escape(r) for r in grid.rows], mode="markers",
            name="most similar",
            marker={"symbol": "square-open", "size": 14, "color": "white", "line": {"width": 2}},
            hoverinfo="skip", showlegend=False,
        ))
    fig.update_layout(
        template=TEMPLATE, title=escape(title or f"{name}: {grid.row_title} vs {grid.col_title}"),
        xaxis={"title": grid.col_title, "type": "category"},
        yaxis={"title": grid.row_title, "type": "category", "autorange": "reversed"},
    )
    return fig


def _labels_for(labels, indices: np.ndarray, n_total: int) -> np.ndarray | None:
    if labels is None:
        return None
    labels = np.asarray(labels).reshape(-1)
    if len(labels) == n_total:
        return labels[indices]
    if len(labels) == len(indices):
        return labels
    raise ValueError(f"labels must have one entry per input row ({n_total}) or per projected row "
                     f"({len(indices)}); got {len(labels)}")


def _class_traces(coords: np.ndarray, labels, indices, hover, class_names) -> list[go.Scatter]:
    groups = [(None, np.arange(len(coords)))] if labels is None else [
        (c, np.flatnonzero(labels == c)) for c in np.unique(labels)]
    traces = []
    for k, (c, rows) in enumerate(groups):
        cname = escape("points" if c is None else (class_names[int(c)] if class_names is not None else c))
        text = [f"sample {indices[r]}" + (f"<br>{escape(hover[r])}" if hover is not None else "") for r in rows]
        traces.append(go.Scattergl(
            x=coords[rows, 0], y=coords[rows, 1], mode="markers", name=cname, text=text,
            marker={"size": 5, "color": PALETTE[k % len(PALETTE)], "opacity": 0.8},
            hovertemplate=f"%{{text}}<br>class {cname}<extra></extra>",
        ))
    return traces


def projection_figure(
    proj: Projection | AlignedProjection,
    labels=None,
    *,
    class_names: Sequence[str] | None = None,
    hover_text: Sequence[str] | None = None,
    title: str | None = None,
) -> go.Figure:
    """Scatter of a 2-D projection coloured by class; an aligned projection gets one frame
    per checkpoint with a slider and a play button.

    Parameters
    ----------
    proj : Projection or AlignedProjection
    labels : array-like, optional
        Class per input row (length ``n_total``) or per projected row.
    class_names : sequence of str, optional
        Names of classes ``0..C-1`` for the legend.
    hover_text : sequence of str, optional
        Extra hover line per input row (length ``n_total``) or per projected row, e.g.
        the sample's label and prediction.
    """
    lab = _labels_for(labels, proj.indices, proj.n_total)
    hover = _labels_for(hover_text, proj.indices, proj.n_total) if hover_text is not None else None
    shown = f"{len(proj.indices):,} of {proj.n_total:,} points" + (
        f" (stratified subsample, cap {proj.cap:,})" if proj.subsampled else "")
    head = escape(title or f"{proj.method.upper()} projection")
    layout = {"template": TEMPLATE, "title": f"{head}<br><sub>{shown}</sub>", "xaxis": {"title": f"{proj.method} 1"},
              "yaxis": {"title": f"{proj.method} 2"}, "legend": {"title": {"text": "class"}}}
    if isinstance(proj, Projection):
        return go.Figure(_class_traces(proj.coords, lab, proj.indices, hover, class_names), layout)
    frames = [go.Frame(data=_class_traces(c, lab, proj.indices, hover, class_names), name=name)
              for c, name in zip(proj.coords, proj.labels)]
    fig = go.Figure(frames[0].data, layout, frames=frames)
    lo, hi = proj.coords.reshape(-1, 2).min(0), proj.coords.reshape(-1, 2).max(0)
    pad = 0.05 * (hi - lo)
    fig.update_xaxes(range=[lo[0] - pad[0], hi[0] + pad[0]])
    fig.update_yaxes(range=[lo[1] - pad[1], hi[1] + pad[1]])
    step_args = {"mode": "immediate", "frame": {"duration": 400, "redraw": True}, "transition": {"duration": 300}}
    fig.update_layout(
        sliders=[{"currentvalue": {"prefix": "checkpoint "}, "pad": {"t": 40, "l": 130}, "steps": [
            {"label": name, "method": "animate", "args": [[name], step_args]} for name in proj.labels]}],
        updatemenus=[{"type": "buttons", "direction": "left", "showactive": False, "x": 0.0, "xanchor": "left",
                      "y": -0.2, "yanchor": "top", "pad": {"t": 40}, "buttons": [
            {"label": "play", "method": "animate", "args": [None, {**step_args, "fromcurrent": True}]},
            {"label": "pause", "method": "animate", "args": [[None], {"mode": "immediate"}]}]}],
    )
    return fig


def neural_collapse_figure(nc: NeuralCollapse, *, title: str = "Neural collapse over training") -> go.Figure:
    """NC1-NC4 curves against training step (2 x 2 panels; NC1 on a log axis)."""
    steps = nc.steps if nc.steps is not None else np.arange(np.size(nc.nc1))
    fig = make_subplots(rows=2, cols=2, subplot_titles=(
        "NC1: within-class variability tr(Σ_W Σ_B⁺)/C", "NC2: convergence to a simplex ETF",
        "NC3: self-duality ‖W/‖W‖ − M/‖M‖‖²", "NC4: agreement with nearest class centre"))
    series = [
        (1, 1, "NC1", nc.nc1), (1, 2, "equinorm (CV of norms)", nc.nc2_equinorm),
        (1, 2, "equiangularity (std cos)", nc.nc2_equiangular), (1, 2, "ETF error", nc.nc2_etf_error),
        (2, 1, "NC3", nc.nc3), (2, 2, "NC4", nc.nc4),
    ]
    for k, (r, c, name, values) in enumerate(series):
        fig.add_trace(go.Scatter(
            x=steps, y=np.atleast_1d(values), mode="lines+markers", name=name, line={"color": PALETTE[k]},
            hovertemplate=f"step %{{x}}<br>{name} %{{y:.4g}}<extra></extra>"), row=r, col=c)
    if np.all(np.isnan(np.atleast_1d(nc.nc3))):
        fig.add_annotation(text="needs the classifier (last layer)", showarrow=False, row=2, col=1,
                           xref="x3 domain", yref="y3 domain", x=0.5, y=0.5)
    steps_arr = np.atleast_1d(np.asarray(steps, dtype=float))
    if steps_arr.size > 1 and steps_arr.min() > 0 and steps_arr.max() / steps_arr.min() >= 100:
        fig.update_xaxes(type="log")
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], row=2, col=2)
    fig.update_xaxes(title_text="step")
    fig.update_layout(template=TEMPLATE, title=escape(title), height=600)
    return fig


def dimension_figure(dims: LayerDimensions, *, title: str = "Dimension per layer") -> go.Figure:
    """TwoNN intrinsic dimension, participation ratio and effective rank for each layer
    (log y axis; the layer width is drawn dashed for scale)."""
    x = [escape(layer) for layer in dims.layers]
    fig = go.Figure()
    for k, (name, values) in enumerate((("TwoNN intrinsic dimension", dims.twonn),
                                        ("participation ratio", dims.participation_ratio),
                                        ("effective rank", dims.effective_rank))):
        fig.add_trace(go.Scatter(x=x, y=values, mode="lines+markers", name=name, line={"color": PALETTE[k]},
                                 hovertemplate=f"layer %{{x}}<br>{name} %{{y:.2f}}<extra></extra>"))
    fig.add_trace(go.Scatter(x=x, y=dims.width, mode="lines", name="width", line={"dash": "dash", "color": "grey"},
                             hovertemplate="layer %{x}<br>width %{y}<extra></extra>"))
    fig.update_layout(template=TEMPLATE, title=escape(title), xaxis={"title": "layer", "type": "category"},
                      yaxis={"title": "dimension", "type": "log"})
    return fig


def neuron_matching_figure(
    matchings: NeuronMatching | Mapping[str, NeuronMatching], *, title: str = "Neuron matching (one-to-one)"
) -> go.Figure:
    """Sorted correlations of one-to-one matched units, one curve per layer
    (x: fraction of matched units, so layers of different width share the axis)."""
    if isinstance(matchings, NeuronMatching):
        matchings = {"layer": matchings}
    fig = go.Figure()
    for k, (name, m) in enumerate(matchings.items()):
        frac = (np.arange(len(m.correlations)) + 0.5) / max(1, len(m.correlations))
        text = [f"A unit {a} ↔ B unit {b}" for a, b in m.pairs]
        fig.add_trace(go.Scatter(
            x=frac, y=m.correlations, mode="lines", name=f"{escape(name)} (mean {m.mean_correlation:.2f})", text=text,
            line={"color": PALETTE[k % len(PALETTE)]},
            hovertemplate="%{text}<br>correlation %{y:.3f}<extra></extra>"))
    fig.update_layout(template=TEMPLATE, title=escape(title),
                      xaxis={"title": "fraction of matched units (sorted)", "range": [0, 1]},
                      yaxis={"title": "correlation of matched pair", "range": [-0.05, 1.02]})
    return fig
