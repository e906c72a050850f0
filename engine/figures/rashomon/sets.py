"""Figures for Rashomon sets: membership, multiplicity, importance clouds, tree sets.

Every function takes results from :mod:`engine.probes.rashomon.sets`,
:mod:`engine.probes.rashomon.multiplicity`, :mod:`engine.probes.rashomon.importance` or
:mod:`engine.probes.rashomon.trees` and returns a :class:`plotly.graph_objects.Figure`. Every
title or axis that shows ε says whether it is relative or absolute. Tree-set figures
(sunburst, diagram, table) live in :mod:`engine.figures.rashomon.trees`.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.probes.rashomon import (
    ImportanceCloud,
    InteractionCloud,
    MultiplicityCurve,
    PredictiveMultiplicity,
    RashomonCurve,
    most_contested,
    rashomon_set,
    rashomon_threshold,
)

from ..style import escape

__all__ = [
    "rashomon_scatter",
    "rashomon_epsilon_slider",
    "rashomon_size_curve",
    "multiplicity_curve_figure",
    "disagreement_histogram",
    "contested_samples_table",
    "importance_cloud_figure",
    "importance_pair_figure",
    "fis_swarm_figure",
    "fis_halo_figure",
]

TEMPLATE = "plotly_white"
MEMBER, OUTSIDE, REFERENCE, SELECTED = "#0072B2", "#BBBBBB", "#D55E00", "#E69F00"


def _eps_word(mode: str) -> str:
    return "relative ε" if mode == "relative" else "absolute ε"


def _finish(fig: go.Figure, title: str | None, height: int = 420) -> go.Figure:
    fig.update_layout(template=TEMPLATE, height=height, title=escape(title) if title else None,
                      margin=dict(l=60, r=20, t=60 if title else 20, b=50))
    return fig


def _names(labels, n):
    return [escape(str(s)) for s in labels] if labels is not None else [f"model {i}" for i in range(n)]


def rashomon_scatter(losses, *, epsilon: float, mode: str = "relative", reference="best",
                     labels: Sequence[str] | None = None, selected=None,
                     metric_name: str = "loss") -> go.Figure:
    """Loss of every model (sorted by loss), members coloured, the threshold as a line.

    Parameters
    ----------
    losses : array-like of shape (M,)
    epsilon, mode, reference
        As in :func:`engine.probes.rashomon.sets.rashomon_set`.
    labels : sequence of str, optional
        Hover name per model (run names).
    selected : array-like of int, optional
        Models to outline (linked selection from another panel).
    metric_name : str
        Axis title, e.g. "test loss".

    Notes
    -----
    Points carry their model index in ``customdata`` so a page can map a box/lasso
    selection back to models.
    """
    arr = np.asarray(losses, dtype=np.float64)
    rs = rashomon_set(arr, epsilon=epsilon, mode=mode, reference=reference)
    order = np.argsort(arr, kind="stable")
    # numeric colours and no per-point strings unless labels are given: plotly validates
    # string arrays element by element (slow for many thousands of points)
    text = None if labels is None else np.asarray(_names(labels, arr.size), dtype=object)[order]
    name_part = "%{text}<br>" if labels is not None else "model %{customdata}<br>"
    fig = go.Figure(go.Scattergl(
        x=np.arange(arr.size), y=arr[order], mode="markers", customdata=order, text=text,
        marker=dict(color=rs.members[order].astype(np.float64), colorscale=[[0, OUTSIDE], [1, MEMBER]],
                    cmin=0, cmax=1, size=6),
        name="models", hovertemplate=name_part + "rank %{x}<br>" + metric_name + " %{y:.5g}<extra></extra>"))
    if selected is not None and len(selected):
        sel = np.asarray(selected)
        rank = np.argsort(order)[sel]
        fig.add_trace(go.Scattergl(x=rank, y=arr[sel], mode="markers", name="selected",
                                   marker=dict(color="rgba(0,0,0,0)", size=11,
                                               line=dict(color=SELECTED, width=2)),
                                   hoverinfo="skip"))
    # one layout update instead of add_hline + update_*axes: this figure is rebuilt per slider move
    fig.update_layout(
        shapes=[dict(type="line", xref="paper", x0=0, x1=1, y0=rs.threshold, y1=rs.threshold,
                     line=dict(color=REFERENCE, dash="dash"))],
        annotations=[dict(xref="paper", x=1, y=rs.threshold, yanchor="bottom", xanchor="right",
                          showarrow=False, text=f"{rs.label}: {rs.size} of {arr.size}")],
        xaxis=dict(title="model (sorted by " + metric_name + ")"), yaxis=dict(title=metric_name))
    return _finish(fig, f"Rashomon set, {_eps_word(mode)} = {epsilon:g}")


def rashomon_epsilon_slider(losses, epsilons, *, mode: str = "relative",
                            metric_name: str = "loss") -> go.Figure:
    """Self-contained ε slider (for offline reports): each step moves the threshold line.

    Models are sorted by loss, so the members at any ε are the points under the line;
    a step only relayouts one shape and the title, whatever the number of models.
    """
    arr = np.asarray(losses, dtype=np.float64)
    eps = np.asarray(epsilons, dtype=np.float64)
    best, srt = float(arr.min()), np.sort(arr)
    fig = go.Figure(go.Scattergl(x=np.arange(arr.size), y=srt, mode="markers",
                                 marker=dict(color=MEMBER, size=5), name="models",
                                 hovertemplate="rank %{x}<br>" + metric_name + " %{y:.5g}<extra></extra>"))
    steps = []
    for e in eps:
        thr = rashomon_threshold(best, float(e), mode)
        size = int(np.searchsorted(srt, thr, side="right"))
        line = dict(type="line", xref="paper", x0=0, x1=1, y0=thr, y1=thr,
                    line=dict(color=REFERENCE, dash="dash"))
        steps.append(dict(method="relayout", label=f"{e:g}",
                          args=[{"shapes": [line],
                                 "title.text": f"{_eps_word(mode)} = {e:g}: {size} of {arr.size} models"}]))
    first = steps[0]["args"][0]
    fig.update_layout(shapes=first["shapes"], title=first["title.text"],
                      sliders=[dict(active=0, steps=steps, currentvalue=dict(prefix=_eps_word(mode) + " = "))])
    fig.update_xaxes(title="model (sorted by " + metric_name + ")")
    fig.update_yaxes(title=metric_name)
    fig.update_layout(template=TEMPLATE, height=480)
    return fig


def rashomon_size_curve(curve: RashomonCurve, *, epsilon: float | None = None) -> go.Figure:
    """Set size (and fraction of the population) against ε, the current ε marked."""
    fig = go.Figure(go.Scatter(x=curve.epsilons, y=curve.sizes, mode="lines+markers", name="size",
                               customdata=curve.fractions,
                               hovertemplate="ε %{x:.4g}<br>%{y} models (%{customdata:.1%})<extra></extra>"))
    if epsilon is not None:
        fig.add_vline(x=epsilon, line=dict(color=REFERENCE, dash="dot"))
    fig.update_xaxes(title=_eps_word(curve.mode))
    fig.update_yaxes(title="models in the Rashomon set")
    return _finish(fig, "Rashomon set size", 320)


def multiplicity_curve_figure(curve: MultiplicityCurve, *, epsilon: float | None = None) -> go.Figure:
    """Ambiguity and discrepancy (left axis) and set size (right axis) as ε grows."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=curve.epsilons, y=curve.ambiguity, name="ambiguity", mode="lines+markers"))
    fig.add_trace(go.Scatter(x=curve.epsilons, y=curve.discrepancy, name="discrepancy", mode="lines+markers"))
    fig.add_trace(go.Scatter(x=curve.epsilons, y=curve.sizes, name="set size", mode="lines",
                             line=dict(color=OUTSIDE, dash="dot")), secondary_y=True)
    if epsilon is not None:
        fig.add_vline(x=epsilon, line=dict(color=REFERENCE, dash="dot"))
    fig.update_xaxes(title=_eps_word(curve.mode))
    fig.update_yaxes(title="share of samples", tickformat=".0%", secondary_y=False)
    fig.update_yaxes(title="models", secondary_y=True)
    return _finish(fig, "Predictive multiplicity (Marx et al. 2020)")


def disagreement_histogram(result: PredictiveMultiplicity) -> go.Figure:
    """Histogram of per-sample disagreement (and of the probability range when known)."""
    fig = go.Figure(go.Histogram(x=result.disagreement, name="disagreement (1 − majority share)",
                                 nbinsx=30, opacity=0.75))
    if result.probability_range is not None:
        fig.add_trace(go.Histogram(x=result.probability_range, name="range of predicted probability",
                                   nbinsx=30, opacity=0.6))
    fig.update_layout(barmode="overlay")
    fig.update_xaxes(title="per-sample value")
    fig.update_yaxes(title="samples")
    return _finish(fig, f"Per-sample disagreement: ambiguity {result.ambiguity:.1%}, "
                        f"discrepancy {result.discrepancy:.1%}", 340)


def contested_samples_table(result: PredictiveMultiplicity, x, feature_names: Sequence[str],
                            k: int = 10) -> go.Figure:
    """Table of the k most contested samples with their features and class shares."""
    idx = most_contested(result, k)
    xs = np.asarray(x)[idx]
    cols = {"sample": idx, "disagreement": np.round(result.disagreement[idx], 3),
            "reference": result.reference[idx]}
    if result.probability_range is not None:
        cols["prob. range"] = np.round(result.probability_range[idx], 3)
    for c in range(result.class_shares.shape[1]):
        cols[f"share class {c}"] = np.round(result.class_shares[idx, c], 3)
    for j, name in enumerate(feature_names):
        cols[escape(str(name))] = np.round(xs[:, j], 4)
    fig = go.Figure(go.Table(header=dict(values=list(cols)), cells=dict(values=list(cols.values()))))
    return _finish(fig, f"{len(idx)} most contested samples", 60 + 28 * (len(idx) + 2))


def importance_cloud_figure(cloud: ImportanceCloud, *, kind: str = "strip", reference: int | None = None,
                            selected=None, order: str = "mean") -> go.Figure:
    """Variable importance cloud: one strip/violin/box of member importances per feature.

    Parameters
    ----------
    cloud : ImportanceCloud
    kind : {"strip", "violin", "box"}
    reference : int, optional
        Member whose importances are drawn as diamonds (e.g. the best model).
    selected : array-like of int, optional
        Restrict the cloud to these members (linked selection).
    order : {"mean", "range", "input"}
        Feature order: by mean importance, by model class reliance range, or as given.
    """
    if kind not in ("strip", "violin", "box"):
        raise ValueError(f"kind must be 'strip', 'violin' or 'box'; got {kind!r}")
    mean = cloud.mean if selected is None else cloud.mean[np.asarray(selected)]
    names = [escape(n) for n in cloud.feature_names]
    key = {"mean": -mean.mean(0), "range": -(mean.max(0) - mean.min(0)),
           "input": np.arange(len(names))}[order]
    feats = np.argsort(key, kind="stable")
    fig = go.Figure()
    for j in feats:
        common = dict(y=mean[:, j], name=names[j], marker_color=MEMBER, showlegend=False,
                      hovertemplate=names[j] + "<br>importance %{y:.4g}<extra></extra>")
        if kind == "violin":
            fig.add_trace(go.Violin(points="all", jitter=0.4, pointpos=0, box_visible=True, **common))
        else:
            fig.add_trace(go.Box(boxpoints="all" if kind == "strip" else "outliers", jitter=0.5,
                                 pointpos=0, fillcolor="rgba(0,0,0,0)" if kind == "strip" else None,
                                 line_width=0 if kind == "strip" else 1.5, **common))
    if reference is not None:
        fig.add_trace(go.Scatter(x=[names[j] for j in feats], y=cloud.mean[reference, feats],
                                 mode="markers", name="reference model",
                                 marker=dict(symbol="diamond", size=10, color=REFERENCE)))
    what = "drop in accuracy" if cloud.metric == "accuracy" else "rise in loss"
    fig.update_yaxes(title=f"permutation importance ({what})")
    return _finish(fig, f"Variable importance cloud over {mean.shape[0]} models "
                        "(range per feature = model class reliance)")


def importance_pair_figure(cloud: ImportanceCloud, i: int, j: int, *, reference: int | None = None,
                           color=None, color_title: str = "loss") -> go.Figure:
    """Member importances of feature i against feature j (a 2-D slice of the cloud)."""
    names = [escape(n) for n in cloud.feature_names]
    marker = dict(size=6, color=MEMBER)
    if color is not None:
        marker.update(color=np.asarray(color), colorscale="Viridis", showscale=True,
                      colorbar=dict(title=color_title))
    fig = go.Figure(go.Scattergl(x=cloud.mean[:, i], y=cloud.mean[:, j], mode="markers", marker=marker,
                                 customdata=np.arange(cloud.mean.shape[0]), name="models",
                                 hovertemplate="model %{customdata}<br>%{x:.4g}, %{y:.4g}<extra></extra>"))
    if reference is not None:
        fig.add_trace(go.Scatter(x=[cloud.mean[reference, i]], y=[cloud.mean[reference, j]], mode="markers",
                                 name="reference model", marker=dict(symbol="star", size=14, color=REFERENCE)))
    fig.update_xaxes(title=f"importance of {names[i]}")
    fig.update_yaxes(title=f"importance of {names[j]}")
    return _finish(fig, f"Importance cloud: {names[i]} vs {names[j]}")


def fis_swarm_figure(inter: InteractionCloud, *, top: int | None = 15, selected=None) -> go.Figure:
    """Swarm plot of FIS per feature pair (pairs with the largest mean |FIS| first).

    References
    ----------
    Li, Wang, Deng & Barnard 2024 (swarm plot of the FIS cloud).
    """
    fis = inter.fis if selected is None else inter.fis[np.asarray(selected)]
    order = np.argsort(-np.abs(fis).mean(0), kind="stable")[: top or None]
    labels = [escape(s) for s in inter.pair_labels()]
    fig = go.Figure()
    for p in order[::-1]:
        fig.add_trace(go.Box(x=fis[:, p], name=labels[p], boxpoints="all", jitter=0.6, pointpos=0,
                             orientation="h", fillcolor="rgba(0,0,0,0)", line_width=0,
                             marker=dict(color=MEMBER, size=5), showlegend=False,
                             hovertemplate=labels[p] + "<br>FIS %{x:.4g}<extra></extra>"))
    fig.add_vline(x=0, line=dict(color=OUTSIDE))
    fig.update_xaxes(title="feature interaction score FIS(i, j) = φ_ij − φ_i − φ_j")
    return _finish(fig, f"FIS cloud over {fis.shape[0]} models", 140 + 28 * len(order))


def fis_halo_figure(inter: InteractionCloud, pair: int, *, reference: int = 0) -> go.Figure:
    """Halo plot of one pair: members at (φ_i, φ_j) coloured by FIS, around the reference.

    The reference model sits at the centre; members of an ε-set lie on shells around it,
    so the cloud looks like a halo whose colour shows how the interaction varies.

    References
    ----------
    Li, Wang, Deng & Barnard 2024 (halo plot).
    """
    i, j = inter.pairs[pair]
    names = [escape(n) for n in inter.feature_names]
    fis = inter.fis[:, pair]
    lim = float(np.abs(fis).max()) or 1.0
    fig = go.Figure(go.Scattergl(
        x=inter.single[:, i], y=inter.single[:, j], mode="markers", name="models",
        customdata=np.stack([np.arange(len(fis)), fis], 1),
        marker=dict(color=fis, colorscale="RdBu", cmin=-lim, cmax=lim, size=7, showscale=True,
                    colorbar=dict(title="FIS")),
        hovertemplate="model %{customdata[0]}<br>φ_i %{x:.4g}, φ_j %{y:.4g}<br>"
                      "FIS %{customdata[1]:.4g}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[inter.single[reference, i]], y=[inter.single[reference, j]], mode="markers",
                             name=f"reference (FIS {fis[reference]:.3g})",
                             marker=dict(symbol="star", size=16, color=REFERENCE)))
    fig.update_xaxes(title=f"φ({names[i]})")
    fig.update_yaxes(title=f"φ({names[j]})")
    return _finish(fig, f"Halo plot: {names[i]} × {names[j]}")
