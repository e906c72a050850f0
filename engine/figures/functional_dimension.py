"""Figures for the functional dimension: the Jacobian's scree plot with its tolerance and
bounds, rank over training, rank against a zoo's hyperparameter, and the probability of no
hidden symmetries over random initialisations.

Each function takes a result from :mod:`engine.probes.landscape.functional_dimension` (or a
table of them) and returns a ``plotly.graph_objects.Figure`` whose hover text carries the
numbers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.figures.style import PALETTE, color_for, escape, finish

__all__ = [
    "functional_dimension_over_training_figure",
    "functional_dimension_runs_figure",
    "hidden_symmetry_probability_figure",
    "scree_figure",
]


def scree_figure(result, *, title: str | None = None) -> go.Figure:
    """Singular values of the parameter-to-output Jacobian, the rank tolerance and the bounds.

    Parameters
    ----------
    result : engine.probes.landscape.functional_dimension.FunctionalDimension
    """
    sv = np.asarray(result.singular_values, dtype=float)
    index = np.arange(1, len(sv) + 1)
    floor = max(float(sv.max(initial=0.0)) * 1e-20, 1e-300)
    counted = sv > result.tolerance
    fig = go.Figure()
    for mask, name, color in ((counted, "counted", PALETTE[0]), (~counted, "below tolerance", PALETTE[3])):
        fig.add_trace(go.Scatter(x=index[mask], y=np.maximum(sv[mask], floor), mode="markers", name=name,
                                 marker=dict(color=color, size=5),
                                 hovertemplate="#%{x}<br>σ=%{y:.3e}<extra></extra>"))
    level = max(result.tolerance, floor)
    fig.add_hline(y=level, line=dict(color="black", dash="dash"))
    # on a log axis an annotation's y is log10 of the value (add_hline's own annotation lands at the top)
    fig.add_annotation(x=0.01, xref="paper", y=float(np.log10(level)), yref="y", text=f"tolerance {level:.2e}",
                       showarrow=False, xanchor="left", yanchor="bottom")
    fig.add_vline(x=result.bound + 0.5, line=dict(color=PALETTE[2], dash="dot"),
                  annotation_text=f"bound {result.bound}", annotation_position="top left")
    if result.rank != result.bound:
        fig.add_vline(x=result.rank + 0.5, line=dict(color=PALETTE[3], dash="dot"),
                      annotation_text=f"rank {result.rank}", annotation_position="bottom left")
    fig.update_xaxes(title_text="singular value index")
    fig.update_yaxes(title_text="singular value", type="log")
    verdict = (f"deficit {result.deficit}: hidden symmetries" if result.has_hidden_symmetries
               else "no hidden symmetries")
    return finish(fig, title=title or f"Jacobian scree: rank {result.rank} of {result.bound} ({verdict}), "
                                      f"{result.n_params} parameters")


def functional_dimension_over_training_figure(curve, *, title: str | None = None) -> go.Figure:
    """Rank at each checkpoint against training step, beside the bound and the parameter count.

    Parameters
    ----------
    curve : engine.probes.landscape.functional_dimension.FunctionalDimensionCurve
    """
    deficit = curve.bound - np.asarray(curve.ranks)
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=curve.steps, y=curve.ranks, mode="lines+markers", name="rank (batch)",
                             line=dict(color=PALETTE[0]), customdata=deficit,
                             hovertemplate="step %{x}<br>rank %{y}<br>deficit %{customdata}<extra></extra>"))
    fig.add_hline(y=curve.bound, line=dict(color=PALETTE[2], dash="dash"),
                  annotation_text=f"bound {curve.bound} = {curve.n_params} − {curve.n_hidden_neurons} scalings"
                  if curve.bound == curve.symmetry_bound else f"bound {curve.bound} (batch rows)")
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="functional dimension (Jacobian rank)")
    return finish(fig, title=title or f"Functional dimension over training ({curve.n_inputs} {curve.inputs} inputs)")


def functional_dimension_runs_figure(table: pd.DataFrame, x: str, *, y: str = "ratio",
                                     title: str | None = None) -> go.Figure:
    """Rank against one hyperparameter across a zoo's runs.

    Parameters
    ----------
    table : DataFrame
        One row per run with columns ``x``, ``rank``, ``bound`` and ``name`` (hover).
    x : str
        The hyperparameter column.
    y : {"ratio", "deficit", "rank"}
        ``rank / bound``, ``bound - rank`` or the rank itself.
    """
    if y not in ("ratio", "deficit", "rank"):
        raise ValueError(f"y must be 'ratio', 'deficit' or 'rank'; got {y!r}")
    missing = [c for c in (x, "rank", "bound") if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}; it has {list(table.columns)[:12]}")
    values = {"ratio": table["rank"] / table["bound"], "deficit": table["bound"] - table["rank"],
              "rank": table["rank"]}[y]
    names = table["name"].astype(str) if "name" in table.columns else pd.Series([""] * len(table), index=table.index)
    custom = np.stack([table["rank"], table["bound"], names.map(escape)], -1)
    fig = go.Figure(go.Scatter(
        x=table[x], y=values, mode="markers", marker=dict(size=9, color=PALETTE[0], opacity=0.8), customdata=custom,
        hovertemplate="%{customdata[2]}<br>" + escape(x) + "=%{x}<br>rank %{customdata[0]} of %{customdata[1]}"
                      "<extra></extra>", name="runs"))
    if y == "ratio":
        fig.add_hline(y=1.0, line=dict(color=PALETTE[2], dash="dash"), annotation_text="no hidden symmetries")
    fig.update_xaxes(title_text=escape(x))
    fig.update_yaxes(title_text={"ratio": "rank / bound", "deficit": "bound − rank", "rank": "rank"}[y])
    return finish(fig, title=title or f"Functional dimension across runs ({len(table)} runs)")


def _wilson(k: np.ndarray, n: np.ndarray, z: float = 1.96) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of a binomial proportion ``k / n``."""
    p = k / n
    centre = (p + z**2 / (2 * n)) / (1 + z**2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / (1 + z**2 / n)
    return centre - half, centre + half


def hidden_symmetry_probability_figure(table: pd.DataFrame, panels: dict[str, str], *, x: str = "depth",
                                       title: str | None = None) -> go.Figure:
    """Fraction of random networks with no hidden symmetries, against ``x``, one panel per swept knob.

    Parameters
    ----------
    table : DataFrame
        One row per network: ``panel`` (which sweep it belongs to), ``x``, the panel's knob
        column, and ``full`` (bool: rank == bound).
    panels : dict
        ``{panel: knob column}``, e.g. ``{"width (n0 = width)": "width", "input dimension": "n0"}``.
    x : str
        Column on the horizontal axis.

    The error bars are 95% Wilson intervals of the binomial proportion.
    """
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[escape(p) for p in panels],
                        horizontal_spacing=0.08, shared_yaxes=True)
    for col, (panel, knob) in enumerate(panels.items(), start=1):
        part = table[table["panel"] == panel]
        levels = sorted(part[knob].unique())
        for level in levels:
            g = part[part[knob] == level].groupby(x)["full"].agg(["sum", "count"]).reset_index()
            k, n = g["sum"].to_numpy(float), g["count"].to_numpy(float)
            lo, hi = _wilson(k, n)
            p = k / n
            fig.add_trace(go.Scatter(
                x=g[x], y=p, mode="lines+markers", name=f"{knob} = {level}", legendgroup=panel,
                legendgrouptitle_text=escape(panel), line=dict(color=color_for(level, levels)),
                error_y=dict(type="data", symmetric=False, array=hi - p, arrayminus=p - lo, thickness=1),
                customdata=np.stack([k, n], -1),
                hovertemplate=f"{escape(knob)}={level}<br>{escape(x)}=%{{x}}<br>P(no hidden)=%{{y:.2f}}"
                              "<br>%{customdata[0]:.0f} of %{customdata[1]:.0f} nets<extra></extra>"), 1, col)
        fig.update_xaxes(title_text=escape(x), dtick=1, row=1, col=col)
    fig.update_yaxes(title_text="P(no hidden symmetries)", range=[-0.03, 1.03], row=1, col=1)
    finish(fig, title=title or "Probability of no hidden symmetries at random initialisation", height=440)
    return fig.update_layout(margin=dict(t=90))  # room for the title above the panel titles
