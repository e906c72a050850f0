"""Phase diagrams: metric heatmaps over temperature x load, the phase map, trends, grokking curves."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import PALETTE, escape, finish

__all__ = ["PHASE_COLORS", "REGIME_COLORS", "grokking_figure", "metric_heatmap", "phase_map", "phase_overview",
           "pruning_overview", "regime_map", "temperature_effect_figure", "tick_label", "trend_figure"]

#: One colour per phase of Yang et al. (2021); "?" marks a cell with a missing metric.
PHASE_COLORS = {"I": "#D55E00", "II": "#E69F00", "III": "#CC79A7", "IV-A": "#56B4E9", "IV-B": "#009E73",
                "?": "#BBBBBB"}


def tick_label(v: float) -> str:
    """Short tick and cell text: 3 significant digits, scientific below 0.01."""
    return f"{v:.2e}" if v != 0 and abs(v) < 1e-2 else f"{v:.3g}"


def _grid(cells: pd.DataFrame, column: str) -> tuple[list, list, np.ndarray]:
    """``(temperatures, loads, values)`` with values shaped (loads, temperatures)."""
    ts = sorted(cells["temperature"].unique())
    ls = sorted(cells["load"].unique())
    numeric = pd.api.types.is_numeric_dtype(cells[column]) and not pd.api.types.is_bool_dtype(cells[column])
    z = np.full((len(ls), len(ts)), np.nan if numeric else None, dtype=float if numeric else object)
    for row in cells.itertuples(index=False):
        z[ls.index(row.load), ts.index(row.temperature)] = getattr(row, column)
    return ts, ls, z


def _heatmap_trace(cells: pd.DataFrame, metric: str, label: str, *, colorscale: str = "Viridis",
                   showscale: bool = True, colorbar_x: float | None = None) -> go.Heatmap:
    ts, ls, z = _grid(cells, metric)
    sd = _grid(cells, f"{metric}_std")[2] if f"{metric}_std" in cells else np.full(z.shape, np.nan)
    n = _grid(cells, f"{metric}_n")[2] if f"{metric}_n" in cells else _grid(cells, "n_runs")[2]
    text = np.vectorize(lambda v: "" if np.isnan(v) else tick_label(v))(z.astype(float))
    colorbar = dict(thickness=12)  # the metric is named in the figure's title; a long bar title squeezes the plot
    if colorbar_x is not None:
        colorbar["x"] = colorbar_x
    return go.Heatmap(
        z=z.astype(float), x=[tick_label(t) for t in ts], y=[tick_label(v) for v in ls], text=text,
        texttemplate="%{text}",
        customdata=np.dstack([sd.astype(float), n.astype(float)]), colorscale=colorscale, showscale=showscale,
        colorbar=colorbar, hovertemplate=f"temperature %{{x}}<br>load %{{y}}<br>{escape(label)} %{{z:.4g}}"
                                         " ± %{customdata[0]:.2g} (s.d.)<br>runs %{customdata[1]}<extra></extra>")


def metric_heatmap(cells: pd.DataFrame, metric: str, *, label: str | None = None, temperature: str = "temperature",
                   load: str = "load", colorscale: str = "Viridis") -> go.Figure:
    """One metric (mean over seeds) over the temperature x load plane; hover gives s.d. and n.

    Parameters
    ----------
    cells : DataFrame
        From :func:`engine.probes.phases.diagram.cell_table` (``temperature, load, <metric>, <metric>_std, ...``).
    metric : str
    label, temperature, load : str
        Axis and colour-bar titles (escaped).
    """
    fig = go.Figure(_heatmap_trace(cells, metric, label or metric, colorscale=colorscale))
    fig.update_xaxes(title=escape(temperature), type="category")
    fig.update_yaxes(title=escape(load), type="category")
    return finish(fig, title=label or metric, height=380)


def phase_map(classified: pd.DataFrame, *, temperature: str = "temperature", load: str = "load",
              thresholds_text: str = "") -> go.Figure:
    """The phase of every cell (Yang et al.'s I-IV-B), coloured, with the full label on hover."""
    ts, ls, phases = _grid(classified.assign(phase=classified["phase"].fillna("?")), "phase")
    labels = _grid(classified, "label")[2]
    names = list(PHASE_COLORS)
    empty = np.vectorize(lambda p: p is None)(phases)  # no runs in this cell
    z = np.vectorize(lambda p: np.nan if p is None else float(names.index(p if p in PHASE_COLORS else "?")))(phases)
    phases = np.where(empty, "", phases)
    labels = np.where(empty, "", labels)
    k = len(names)
    scale = []
    for i, name in enumerate(names):
        scale += [[i / k, PHASE_COLORS[name]], [(i + 1) / k, PHASE_COLORS[name]]]
    fig = go.Figure(go.Heatmap(
        z=z, x=[tick_label(t) for t in ts], y=[tick_label(v) for v in ls], zmin=-0.5, zmax=k - 0.5, colorscale=scale,
        text=phases, texttemplate="%{text}", customdata=labels, showscale=False,
        hovertemplate="temperature %{x}<br>load %{y}<br>phase %{text}: %{customdata}<extra></extra>"))
    fig.update_xaxes(title=escape(temperature), type="category")
    fig.update_yaxes(title=escape(load), type="category")
    if thresholds_text:
        fig.add_annotation(text=escape(thresholds_text), xref="paper", yref="paper", x=0, y=-0.28,
                           showarrow=False, xanchor="left", font=dict(size=11))
    return finish(fig, height=400)


def trend_figure(cells: pd.DataFrame, metric: str, *, along: str = "temperature", by: str = "load",
                 label: str | None = None, along_label: str | None = None, by_label: str | None = None,
                 log_x: bool = True) -> go.Figure:
    """``metric`` (mean ± s.d. over seeds) against one axis, one line per value of the other."""
    fig = go.Figure()
    for i, (value, group) in enumerate(cells.sort_values(along).groupby(by, sort=True)):
        fig.add_trace(go.Scatter(
            x=group[along], y=group[metric], mode="lines+markers", name=f"{escape(by_label or by)} {tick_label(value)}",
            line=dict(color=PALETTE[i % len(PALETTE)]),
            error_y=dict(type="data", array=group.get(f"{metric}_std"), visible=True)))
    fig.update_xaxes(title=escape(along_label or along), type="log" if log_x else "linear")
    fig.update_yaxes(title=escape(label or metric))
    return finish(fig, height=360)


def phase_overview(cells: pd.DataFrame, classified: pd.DataFrame, panels: Mapping[str, str], *,
                   temperature: str, load: str, title: str = "") -> go.Figure:
    """Heatmaps of the ``panels`` (metric -> label) and the phase map side by side (the README figure)."""
    n = len(panels) + 1
    fig = make_subplots(rows=1, cols=n, subplot_titles=[escape(v) for v in panels.values()] + ["phase"],
                        horizontal_spacing=0.07)
    for i, (metric, label) in enumerate(panels.items()):
        x_end = (i + 1) / n - 0.07 * (n - 1 - i) / n
        fig.add_trace(_heatmap_trace(cells, metric, label, colorbar_x=x_end, showscale=True)
                      .update(colorbar=dict(len=0.9, thickness=10)), row=1, col=i + 1)
    pm = phase_map(classified).data[0]
    fig.add_trace(pm, row=1, col=n)
    for c in range(1, n + 1):
        fig.update_xaxes(title=escape(temperature), type="category", row=1, col=c)
        fig.update_yaxes(title=escape(load) if c == 1 else None, type="category", row=1, col=c)
    return finish(fig, title=title or None, height=420).update_layout(width=420 * n)


def grokking_figure(steps: Sequence[int], train_acc: Sequence[float], test_acc: Sequence[float], *,
                    memorized_step: int | None = None, generalized_step: int | None = None,
                    probes: Mapping[str, tuple[Sequence[int], Sequence[float]]] | None = None,
                    log_x: bool = False) -> go.Figure:
    """Train/test accuracy over training, the memorisation and grokking steps, and probe metrics below.

    ``probes`` maps a label (e.g. "weight norm", "top Hessian eigenvalue") to ``(steps, values)``;
    each gets its own row, sharing the step axis with the accuracies.
    """
    probes = dict(probes or {})
    rows = 1 + len(probes)
    fig = make_subplots(rows=rows, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        row_heights=[2] + [1] * len(probes))
    for name, y, color in (("train accuracy", train_acc, PALETTE[0]), ("test accuracy", test_acc, PALETTE[1])):
        fig.add_trace(go.Scatter(x=list(steps), y=list(y), mode="lines+markers", name=name,
                                 line=dict(color=color), marker=dict(size=4)), row=1, col=1)
    for step, text, dash in ((memorized_step, "memorised", "dot"), (generalized_step, "grokked", "dash")):
        if step is not None:
            fig.add_vline(x=step, line=dict(dash=dash, color="#555"), annotation_text=f"{text} @ {step}",
                          annotation_position="top left" if text == "memorised" else "top right")
    fig.update_yaxes(title="accuracy", range=[0, 1.05], row=1, col=1)
    for r, (label, (xs, ys)) in enumerate(probes.items(), start=2):
        fig.add_trace(go.Scatter(x=list(xs), y=list(ys), mode="lines+markers", name=escape(label),
                                 line=dict(color=PALETTE[(r + 1) % len(PALETTE)]), marker=dict(size=4)),
                      row=r, col=1)
        fig.update_yaxes(title=escape(label), row=r, col=1)
    fig.update_xaxes(title="step", type="log" if log_x else "linear", row=rows, col=1)
    if not log_x and len(steps):
        fig.update_xaxes(range=[min(steps), max(steps)])  # the step lines' labels must not widen the axis
    return finish(fig, height=320 + 180 * len(probes))


#: One colour per regime of Zhou et al. (2023); "?" marks a cell with a missing metric.
REGIME_COLORS = {"I": "#D55E00", "II-A": "#56B4E9", "II-B": "#009E73", "?": "#BBBBBB"}


def _regime_trace(classified: pd.DataFrame) -> go.Heatmap:
    ts, ls, regimes = _grid(classified.assign(regime=classified["regime"].fillna("?")), "regime")
    names = list(REGIME_COLORS)
    empty = np.vectorize(lambda r: r is None)(regimes)
    z = np.vectorize(lambda r: np.nan if r is None else float(names.index(r if r in REGIME_COLORS else "?")))(regimes)
    scale = []
    for i, name in enumerate(names):
        scale += [[i / len(names), REGIME_COLORS[name]], [(i + 1) / len(names), REGIME_COLORS[name]]]
    return go.Heatmap(z=z, x=[tick_label(t) for t in ts], y=[tick_label(v) for v in ls], zmin=-0.5,
                      zmax=len(names) - 0.5, colorscale=scale, text=np.where(empty, "", regimes),
                      texttemplate="%{text}", showscale=False,
                      hovertemplate="temperature %{x}<br>density %{y}<br>regime %{text}<extra></extra>")


def regime_map(classified: pd.DataFrame, *, temperature: str = "temperature", load: str = "density",
               rule_text: str = "") -> go.Figure:
    """Zhou et al.'s regime (I, II-A, II-B) of every (temperature, density) cell of pruned networks."""
    fig = go.Figure(_regime_trace(classified))
    fig.update_xaxes(title=escape(temperature), type="category")
    fig.update_yaxes(title=escape(load), type="category")
    if rule_text:
        fig.add_annotation(text=escape(rule_text), xref="paper", yref="paper", x=0, y=-0.28, showarrow=False,
                           xanchor="left", font=dict(size=11))
    return finish(fig, height=400)


def _relative(cells: pd.DataFrame, metric: str) -> pd.DataFrame:
    """``metric`` minus its value at the coldest temperature of the same load (0 at the left end)."""
    cold = cells.sort_values("temperature").groupby("load")[metric].transform("first")
    return cells.assign(**{f"{metric}_rel": cells[metric] - cold})


def _effect_traces(cells: pd.DataFrame, metric: str) -> list[go.Scatter]:
    rel = _relative(cells, metric)
    traces = []
    for i, (value, g) in enumerate(rel.sort_values("temperature").groupby("load", sort=True)):
        traces.append(go.Scatter(
            x=[tick_label(t) for t in g["temperature"]], y=g[f"{metric}_rel"], mode="lines+markers",
            name=f"density {tick_label(value)}", line=dict(color=PALETTE[i % len(PALETTE)]),
            error_y=dict(type="data", array=g.get(f"{metric}_std"), visible=True, thickness=1),
            hovertemplate=f"temperature %{{x}}<br>{escape(metric)} change %{{y:+.3f}}<extra>density "
                          f"{tick_label(value)}</extra>"))
    return traces


def temperature_effect_figure(cells: pd.DataFrame, metric: str = "test_error", *, temperature: str = "temperature",
                              label: str | None = None) -> go.Figure:
    """Per density, ``metric`` of the pruned networks relative to the coldest dense training (error bars: s.d.).

    A line going down means a hotter dense training pruned better at that density; Zhou et al.'s
    sharp transition is the density at which the lines turn from falling to rising.
    """
    fig = go.Figure(_effect_traces(cells, metric))
    fig.add_hline(y=0, line=dict(color="#888", dash="dot"))
    fig.update_xaxes(title=escape(temperature), type="category")
    fig.update_yaxes(title=escape(f"{label or metric} minus at the coldest"))
    return finish(fig, height=380)


def pruning_overview(cells: pd.DataFrame, classified: pd.DataFrame, *, temperature: str, metric: str = "test_error",
                     label: str = "test error", title: str = "") -> go.Figure:
    """The README figure: ``metric`` over temperature x density, its change with temperature, and the regimes."""
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.12, subplot_titles=[
        escape(f"{label} of the pruned networks"), escape(f"{label} minus at the coldest training"), "regime"])
    fig.add_trace(_heatmap_trace(cells, metric, label, colorbar_x=0.265).update(
        colorbar=dict(len=0.9, thickness=10)), row=1, col=1)
    for tr in _effect_traces(cells, metric):
        fig.add_trace(tr, row=1, col=2)
    fig.add_hline(y=0, line=dict(color="#888", dash="dot"), row=1, col=2)
    fig.add_trace(_regime_trace(classified), row=1, col=3)
    for c in (1, 2, 3):
        fig.update_xaxes(title=escape(temperature), type="category", row=1, col=c)
    fig.update_yaxes(title="density", type="category", row=1, col=1)
    fig.update_yaxes(type="category", row=1, col=3)
    return finish(fig, title=title or None, height=440).update_layout(width=1500, legend=dict(x=0.635, y=1.0))
