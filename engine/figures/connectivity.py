"""Figures for mode connectivity: paths and barriers, alignment, layer-wise barriers,
pairwise barrier matrices, instability, singular-vector alignment and merging.

Every barrier drawn says which definition it uses (the literature disagrees): the
formula appears in the subplot title, in the legend entry and in the hover text.
Functions take result dataclasses from ``engine.probes`` and return
``plotly.graph_objects.Figure``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.figures.style import PALETTE, escape, finish
from engine.probes.connectivity import BARRIER_DEFINITIONS, InterpolationCurve, barrier

__all__ = [
    "barrier_matrix_figure",
    "barrier_summary_figure",
    "instability_figure",
    "interpolation_figure",
    "layerwise_figure",
    "merge_figure",
    "singular_alignment_figure",
    "singular_cosine_figure",
]

_DASH = {"train": "solid", "given": "solid", "test": "dash"}
_METRIC_NAMES = {"loss": "loss", "error": "error"}


def _definition(kind: str, metric: str) -> str:
    if kind not in BARRIER_DEFINITIONS:
        raise ValueError(f"kind must be one of {', '.join(BARRIER_DEFINITIONS)}; got {kind!r}")
    return BARRIER_DEFINITIONS[kind].replace("L(", "E(" if metric == "error" else "L(")


def _curves(curves) -> list[InterpolationCurve]:
    if hasattr(curves, "curves"):  # a PathComparison
        return list(curves.curves.values())
    if isinstance(curves, InterpolationCurve):
        return [curves]
    if isinstance(curves, Mapping):
        return list(curves.values())
    return list(curves)


def _name(c: InterpolationCurve) -> str:
    bits = [c.label or "path", c.split]
    if c.bn == "reset":
        bits.append("BN reset")
    return " · ".join(bits)


def _baseline(c_values: np.ndarray, alphas: np.ndarray, kind: str, alpha: float) -> float:
    v0, v1 = c_values[0], c_values[-1]
    return float((1 - alpha) * v0 + alpha * v1) if kind == "max_minus_linear" else float((v0 + v1) / 2)


def interpolation_figure(
    curves,
    *,
    metrics: Sequence[str] = ("loss", "error"),
    kind: str = "max_minus_linear",
    title: str | None = None,
) -> go.Figure:
    """Loss and error along one or more paths, the barrier of each drawn and named.

    Parameters
    ----------
    curves : InterpolationCurve, sequence / dict of them, or a PathComparison
        Colour follows the curve's label (naive, weight matching, ...), dash the split
        (train solid, test dashed); BN reset is named in the legend.
    metrics : sequence of {"loss", "error"}
        One panel each; "error" is skipped for regression curves (all NaN).
    kind : {"max_minus_linear", "max_minus_mean", "midpoint"}
        Barrier definition drawn: a dotted segment from the reference level (the line
        between the endpoints, or their mean) up to the curve at the maximising alpha.
    """
    items = _curves(curves)
    if not items:
        raise ValueError("interpolation_figure needs at least one curve")
    metrics = [m for m in metrics if m == "loss" or not all(np.isnan(c.error).all() for c in items)]
    for m in metrics:
        if m not in _METRIC_NAMES:
            raise ValueError(f"metrics must be 'loss' or 'error'; got {m!r}")
    titles = [f"{m}<br><sup>barrier: {_definition(kind, m)}</sup>" for m in metrics]  # two lines: no overlap
    fig = make_subplots(rows=1, cols=len(metrics), subplot_titles=titles, horizontal_spacing=0.1)
    labels = list(dict.fromkeys(c.label for c in items))
    for col, metric in enumerate(metrics, start=1):
        for c in items:
            values = c.loss if metric == "loss" else c.error
            color = PALETTE[labels.index(c.label) % len(PALETTE)]
            _path_traces(fig, c, values, metric, kind, color, col, show=col == 1)
        fig.update_xaxes(title_text="α (0 = A, 1 = B)", row=1, col=col)
        fig.update_yaxes(title_text=metric, row=1, col=col)
    n = items[0].n_samples
    fig = finish(fig, title=title or f"Linear interpolation ({n} samples per point)", height=460)
    return fig.update_layout(margin_t=90)  # room for the two-line panel titles under the figure's


def _path_traces(fig, c: InterpolationCurve, values, metric, kind, color, col, show) -> None:
    name = escape(_name(c))
    if np.isnan(values).any():
        return
    b = barrier(values, alphas=c.alphas, kind=kind, metric=metric) if c.alphas[0] == 0 and c.alphas[-1] == 1 else None
    legend = f"{name} — {metric} barrier {b.value:.3g}" if b is not None else name
    fig.add_trace(go.Scatter(x=c.alphas, y=values, mode="lines+markers", name=legend, legendgroup=name,
                             showlegend=show, line=dict(color=color, dash=_DASH.get(c.split, "solid")),
                             marker=dict(size=4),
                             hovertemplate=f"α=%{{x:.3f}}<br>{metric}=%{{y:.4g}}<extra>{name}</extra>"), 1, col)
    if b is None:
        return
    base = _baseline(values, c.alphas, kind, b.alpha)
    top = base + b.value
    fig.add_trace(go.Scatter(x=[b.alpha, b.alpha], y=[base, top], mode="lines", legendgroup=name, showlegend=False,
                             line=dict(color=color, dash="dot", width=2),
                             hovertemplate=escape(b.label) + f"<br>at α={b.alpha:.3f}<extra>{name}</extra>"), 1, col)


def barrier_summary_figure(comparison, *, kind: str = "max_minus_linear", metric: str = "loss",
                           title: str | None = None) -> go.Figure:
    """Barrier of each path of a PathComparison as grouped bars: before vs after alignment."""
    items = _curves(comparison)
    groups = list(dict.fromkeys(f"{c.split}{' · BN reset' if c.bn == 'reset' else ''}" for c in items))
    labels = list(dict.fromkeys(c.label for c in items))
    fig = go.Figure()
    for i, label in enumerate(labels):
        ys, xs = [], []
        for c in items:
            if c.label == label:
                xs.append(f"{c.split}{' · BN reset' if c.bn == 'reset' else ''}")
                ys.append(barrier(c, kind=kind, metric=metric).value)
        fig.add_trace(go.Bar(x=xs, y=ys, name=escape(label), marker_color=PALETTE[i % len(PALETTE)],
                             hovertemplate="%{x}<br>barrier=%{y:.4g}<extra>" + escape(label) + "</extra>"))
    fig.update_layout(barmode="group", xaxis=dict(categoryorder="array", categoryarray=groups))
    fig.update_yaxes(title_text=f"{metric} barrier")
    default = f"{metric} barrier, {kind}: {_definition(kind, metric)}"
    return finish(fig, title=title or default, height=380)


def layerwise_figure(result, *, title: str | None = None) -> go.Figure:
    """Bars of each layer's barrier, with the other layers at A and at B."""
    fig = go.Figure()
    for i, (side, values) in enumerate((("rest at A", result.from_a), ("rest at B", result.from_b))):
        members = ["<br>".join(map(escape, m[:6])) + ("<br>…" if len(m) > 6 else "") for m in result.members]
        fig.add_trace(go.Bar(x=[escape(g) for g in result.groups], y=values, name=side, marker_color=PALETTE[i],
                             customdata=members,
                             hovertemplate="%{x}<br>barrier=%{y:.4g}<br>%{customdata}<extra>" + side + "</extra>"))
    fig.update_layout(barmode="group")
    what = "cumulative groups (layers up to)" if result.cumulative else "one layer at a time"
    fig.update_xaxes(title_text=what)
    fig.update_yaxes(title_text=f"{result.metric} barrier")
    default = (f"Layer-wise {result.metric} barrier ({result.split}, BN {result.bn}) — "
               f"{result.kind}: {_definition(result.kind, result.metric)}")
    fig = finish(fig, title=title or default, height=400)
    if np.all(np.nan_to_num(np.concatenate([result.from_a, result.from_b]), nan=1.0) <= 1e-9):
        fig.add_annotation(text="every barrier is 0: each one-layer path stays at or below the straight line "
                                "between its ends (no bump to measure)",
                           xref="paper", yref="paper", x=0.5, y=0.5, showarrow=False)
    return fig


def barrier_matrix_figure(result, *, which: str = "both", title: str | None = None) -> go.Figure:
    """Heatmaps of pairwise barriers, rows and columns ordered by the clustering."""
    panels = {"naive": result.naive, "aligned": result.aligned}
    if which not in ("naive", "aligned", "both"):
        raise ValueError(f"which must be 'naive', 'aligned' or 'both'; got {which!r}")
    chosen = [k for k in ("naive", "aligned") if (which in (k, "both")) and panels[k] is not None]
    if not chosen:
        raise ValueError("this barrier matrix has no aligned barriers (align='none'); use which='naive'")
    order = list(result.order)
    names = [escape(f"{result.names[i]} (basin {result.basins[i]})") for i in order]
    vmax = max(float(np.nanmax(panels[k])) for k in chosen) or 1.0
    fig = make_subplots(rows=1, cols=len(chosen), subplot_titles=[f"{k} ({result.align})" if k == "aligned" else k
                                                                  for k in chosen], horizontal_spacing=0.12)
    for col, k in enumerate(chosen, start=1):
        z = panels[k][np.ix_(order, order)]
        fig.add_trace(go.Heatmap(z=z, x=names, y=names, zmin=0, zmax=vmax, colorscale="Viridis",
                                 showscale=col == len(chosen), colorbar=dict(title="barrier"),
                                 hovertemplate="%{y} ↔ %{x}<br>barrier=%{z:.4g}<extra>" + k + "</extra>"), 1, col)
        fig.update_yaxes(autorange="reversed", row=1, col=col)
    default = (f"Pairwise {result.metric} barrier ({result.split}) — {result.kind}: "
               f"{_definition(result.kind, result.metric)}; basins cut at {result.threshold:.3g}")
    return finish(fig, title=title or default, height=460)


def instability_figure(result, *, log_x: bool = False, title: str | None = None) -> go.Figure:
    """Barrier between spawned children against the spawn step (Frankle et al.'s instability)."""
    steps = np.asarray(result.spawn_steps, dtype=float)
    keep = steps > 0 if log_x else np.ones_like(steps, dtype=bool)
    custom = np.asarray(result.child_error)[keep]
    fig = go.Figure(go.Scatter(
        x=steps[keep], y=np.asarray(result.barrier)[keep], mode="lines+markers", name="instability",
        line=dict(color=PALETTE[0]), customdata=custom,
        hovertemplate="spawn step %{x}<br>barrier=%{y:.4g}<br>children: %{customdata[0]:.4g}, "
                      "%{customdata[1]:.4g}<extra></extra>"))
    fig.update_xaxes(title_text="spawn step k" + (" (log; k=0 not shown)" if log_x and not keep.all() else ""),
                     type="log" if log_x else "linear")
    fig.update_yaxes(title_text=f"{result.metric} barrier")
    default = (f"Instability ({result.split}) — {result.kind}: {_definition(result.kind, result.metric)}; "
               f"children seeds {list(result.seeds)}")
    return finish(fig, title=title or default, height=380)


def singular_alignment_figure(result, *, side: str = "left", title: str | None = None) -> go.Figure:
    """Heatmaps of ``|cos|`` between the i-th singular vectors of A and B, before and after alignment."""
    if side not in ("left", "right"):
        raise ValueError(f"side must be 'left' or 'right'; got {side!r}")
    before = result.cos_left_before if side == "left" else result.cos_right_before
    after = result.cos_left_after if side == "left" else result.cos_right_after
    width = max(len(v) for v in before)

    def pad(rows):
        return np.array([np.pad(r, (0, width - len(r)), constant_values=np.nan) for r in rows])

    sv = pad(result.singular_values_a)
    layers = [escape(n) for n in result.layers]
    titles = [f"before (‖A−B‖ total {np.sqrt((result.distance_before ** 2).sum()):.3g})",
              f"after (‖A−PB‖ total {np.sqrt((result.distance_after ** 2).sum()):.3g})"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles, shared_yaxes=True, horizontal_spacing=0.06)
    for col, rows in enumerate((before, after), start=1):
        fig.add_trace(go.Heatmap(z=pad(rows), x=np.arange(1, width + 1), y=layers, zmin=0, zmax=1,
                                 colorscale="Viridis", customdata=sv, showscale=col == 2,
                                 colorbar=dict(title="|cos|"),
                                 hovertemplate="%{y}, i=%{x}<br>|cos|=%{z:.3f}<br>σ_i(A)=%{customdata:.4g}"
                                               "<extra></extra>"), 1, col)
        fig.update_xaxes(title_text="singular index i (by σ, descending)", row=1, col=col)
    default = f"|cos| of the i-th {side} singular vectors of A and B"
    return finish(fig, title=title or default, height=120 + 28 * len(layers))


def singular_cosine_figure(result, layer: str | None = None, *, title: str | None = None) -> go.Figure:
    """One layer: ``|cos|`` of the i-th left/right singular vectors against ``σ_i(A)``, before and after."""
    name = layer if layer is not None else result.layers[0]
    if name not in result.layers:
        raise ValueError(f"layer {name!r} is not in the result; it has {list(result.layers)}")
    i = result.layers.index(name)
    sv = result.singular_values_a[i]
    fig = go.Figure()
    series = (("left", "before", result.cos_left_before), ("left", "after", result.cos_left_after),
              ("right", "before", result.cos_right_before), ("right", "after", result.cos_right_after))
    for side, when, values in series:
        fig.add_trace(go.Scatter(x=sv, y=values[i], mode="markers", name=f"{side}, {when} alignment",
                                 marker=dict(color=PALETTE[0 if when == "before" else 3],
                                             symbol="circle" if side == "left" else "diamond-open", size=7),
                                 customdata=np.arange(1, len(sv) + 1),
                                 hovertemplate="i=%{customdata}<br>σ_i(A)=%{x:.4g}<br>|cos|=%{y:.3f}<extra></extra>"))
    fig.update_xaxes(title_text="singular value σ_i of A", type="log")
    fig.update_yaxes(title_text="|cos(u_i^A, u_i^B)|, |cos(v_i^A, v_i^B)|", range=[0, 1.05])
    default = (f"{escape(name)}: singular-vector agreement vs σ (‖A−B‖ {result.distance_before[i]:.3g} → "
               f"{result.distance_after[i]:.3g})")
    return finish(fig, title=title or default, height=400)


def merge_figure(results, *, metric: str = "error", title: str | None = None) -> go.Figure:
    """Members and merged models side by side (bars), one bar per merge recipe."""
    items = [results] if hasattr(results, "state") else list(results)
    if not items:
        raise ValueError("merge_figure needs at least one MergeResult")
    if metric not in ("loss", "error"):
        raise ValueError(f"metric must be 'loss' or 'error'; got {metric!r}")
    members = items[0].member_loss if metric == "loss" else items[0].member_error
    xs = [f"member {i}" for i in range(len(members))]
    fig = go.Figure(go.Bar(x=xs, y=members, name="members", marker_color=PALETTE[7],
                           hovertemplate="%{x}<br>" + metric + "=%{y:.4g}<extra></extra>"))
    for i, r in enumerate(items):
        label = escape(f"{r.method} · align {r.align} · BN {r.bn}")
        fig.add_trace(go.Bar(x=[label], y=[r.loss if metric == "loss" else r.error], name=label,
                             marker_color=PALETTE[i % 7],
                             hovertemplate=f"{label}<br>{metric}=%{{y:.4g}}<extra></extra>"))
    fig.update_yaxes(title_text=f"{metric} ({items[0].split})")
    return finish(fig, title=title or f"Merged models vs members ({metric}, {items[0].split})", height=400)
