"""Figures of a whole zoo: training curves, phase diagrams, parallel coordinates.

Inputs are tables as the store returns them: a runs table (one row per run, swept
hyperparameters as ``hp_<axis>`` columns, final metrics as ``final_<split>_<name>``)
and a long metrics table (``run_id, step, split, name, value``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from .style import PALETTE, escape, finish

__all__ = ["hparam_columns", "parallel_coordinates", "phase_diagram", "phase_table", "training_curves"]

_DASH = {"train": "solid", "test": "dash", "batch": "dot"}


def hparam_columns(runs: pd.DataFrame) -> list[str]:
    """Swept hyperparameter columns (``hp_*``) that take more than one value."""
    return [c for c in runs.columns if c.startswith("hp_") and runs[c].nunique(dropna=True) > 1]


def _label(col: str) -> str:
    """A column's name for axes and hover text (hyperparameter names come from users' files: escaped)."""
    return escape(col.removeprefix("hp_").removeprefix("final_").replace("_", " "))


def training_curves(metrics: pd.DataFrame, runs: pd.DataFrame, *, name: str = "loss",
                    splits: tuple[str, ...] = ("train", "test"), color_by: str | None = None,
                    band: bool = True, log_x: bool = False, log_y: bool = False) -> go.Figure:
    """``name`` vs step per split, grouped by ``color_by``: mean line with a ±1 s.d. band over seeds.

    Without ``color_by`` every run gets its own line.
    """
    fig = go.Figure()
    df = metrics[(metrics["name"] == name) & metrics["split"].isin(splits)]
    if df.empty:
        return finish(fig, title=f"no {name} recorded yet")
    key = color_by if color_by in runs.columns else "run_id"
    extra = [c for c in dict.fromkeys([key, "name"]) if c in runs.columns and c != "run_id"]
    df = df.merge(runs[["run_id", *extra]].rename(columns={"name": "run_name"}), on="run_id")
    if key == "name":
        key = "run_name"
    groups = sorted(df[key].dropna().unique().tolist(), key=lambda v: (str(type(v)), v))
    for gi, value in enumerate(groups):
        color = PALETTE[gi % len(PALETTE)]  # by position: distinct for up to len(PALETTE) groups
        label = f"{_label(key)}={escape(value)}" if key != "run_id" else escape(
            df.loc[df[key] == value, "run_name"].iloc[0] if "run_name" in df else value)
        for split in splits:
            part = df[(df[key] == value) & (df["split"] == split)]
            if part.empty:
                continue
            stats = part.groupby("step")["value"].agg(["mean", "std", "count"]).reset_index()
            stats["std"] = stats["std"].fillna(0.0)
            hi, lo = stats["mean"] + stats["std"], stats["mean"] - stats["std"]
            if name == "acc":  # an accuracy band stays within [0, 1]
                hi, lo = hi.clip(upper=1.0), lo.clip(lower=0.0)
            legend = f"{label} · {split}"
            if band and key != "run_id" and (stats["count"] > 1).any():
                fig.add_trace(go.Scatter(
                    x=np.r_[stats["step"], stats["step"][::-1]],
                    y=np.r_[hi, lo[::-1]],
                    fill="toself", fillcolor=color, opacity=0.15, line=dict(width=0), hoverinfo="skip",
                    showlegend=False, legendgroup=legend))
            fig.add_trace(go.Scatter(
                x=stats["step"], y=stats["mean"], mode="lines+markers", name=legend, legendgroup=legend,
                line=dict(color=color, dash=_DASH.get(split, "solid")), marker=dict(size=4),
                customdata=np.c_[stats["std"], stats["count"]],
                hovertemplate=f"{legend}<br>step %{{x}}<br>{name} %{{y:.4g}} ± %{{customdata[0]:.2g}}"
                              "<br>runs %{customdata[1]}<extra></extra>"))
    fig.update_xaxes(title="step", type="log" if log_x else "linear")
    fig.update_yaxes(title=name, type="log" if log_y else "linear")
    return finish(fig)


def phase_table(runs: pd.DataFrame, x: str, y: str, metric: str) -> pd.DataFrame:
    """Cells of the (x, y) plane: mean/std of ``metric`` over the runs (seeds) in each cell, with their ids."""
    df = runs.dropna(subset=[x, y])
    g = df.groupby([x, y], dropna=True)
    cells = g[metric].agg(["mean", "std", "count"]).reset_index()
    cells["run_ids"] = g["run_id"].apply(list).values
    return cells


def phase_diagram(runs: pd.DataFrame, x: str, y: str, metric: str, *, colorscale: str = "Viridis",
                  log_x: bool = False, log_y: bool = False) -> go.Figure:
    """Heatmap of ``metric`` averaged over seeds on the (x, y) hyperparameter plane.

    Each cell's hover lists the mean, s.d. and the number of runs behind it; ``customdata``
    holds the run ids so a click can select them.
    """
    cells = phase_table(runs, x, y, metric)
    xs = sorted(cells[x].unique())
    ys = sorted(cells[y].unique())
    z = np.full((len(ys), len(xs)), np.nan)
    sd = np.full_like(z, np.nan)
    n = np.zeros_like(z)
    ids = np.empty(z.shape, dtype=object)
    ids.fill("")
    for _, row in cells.iterrows():
        i, j = ys.index(row[y]), xs.index(row[x])
        z[i, j], sd[i, j], n[i, j] = row["mean"], row["std"], row["count"]
        ids[i, j] = ",".join(row["run_ids"])
    text = np.vectorize(lambda v: "" if np.isnan(v) else f"{v:.3g}")(z)
    fig = go.Figure(go.Heatmap(
        z=z, x=[escape(v) for v in xs], y=[escape(v) for v in ys], colorscale=colorscale, text=text,
        texttemplate="%{text}", customdata=np.dstack([sd, n, ids]),
        colorbar=dict(title=_label(metric)),
        hovertemplate=f"{_label(x)} %{{x}}<br>{_label(y)} %{{y}}<br>{_label(metric)} %{{z:.4g}}"
                      " ± %{customdata[0]:.2g}<br>runs %{customdata[1]}<extra></extra>"))
    fig.update_xaxes(title=_label(x), type="category")
    fig.update_yaxes(title=_label(y), type="category")
    fig.update_layout(meta={"log_x": log_x, "log_y": log_y})
    return finish(fig, height=460)


def parallel_coordinates(runs: pd.DataFrame, dims: list[str], color: str) -> go.Figure:
    """One line per run from its hyperparameters to ``color`` (a metric)."""
    df = runs.dropna(subset=[color])
    dimensions = []
    for d in [*dims, color]:
        values = df[d]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):  # object or str dtype
            cats = sorted(values.astype(str).unique())
            dimensions.append(dict(label=_label(d), values=values.astype(str).map(cats.index),
                                   tickvals=list(range(len(cats))), ticktext=[escape(c) for c in cats]))
        else:
            dimensions.append(dict(label=_label(d), values=values))
    fig = go.Figure(go.Parcoords(line=dict(color=df[color], colorscale="Viridis", showscale=True,
                                           colorbar=dict(title=_label(color))), dimensions=dimensions))
    return finish(fig, height=420)
