"""Figures of the zoo map: models as points (coloured by any column), the dendrogram of their
clusters with the cut the user set, the distance matrix, and runs' paths through training.

Every point carries its run id as ``customdata[0]``, so a selection on the map is a
selection of runs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from scipy.cluster.hierarchy import dendrogram

from engine.probes.zoo import ModelEmbedding, ZooClusters, ZooDistances

from .style import PALETTE, escape, finish

__all__ = ["dendrogram_figure", "distance_heatmap", "trajectory_map_figure", "zoo_map_figure"]


def _hover(points: pd.DataFrame, columns: Sequence[str]) -> list[str]:
    out = []
    for _, row in points.iterrows():
        parts = [f"<b>{escape(row['label'])}</b>"]
        for c in columns:
            v = row.get(c)
            if v is not None and not (isinstance(v, float) and np.isnan(v)):
                parts.append(f"{escape(c.removeprefix('hp_').removeprefix('final_'))}: "
                             f"{v:.4g}" if isinstance(v, float) else f"{escape(c)}: {escape(v)}")
        out.append("<br>".join(parts))
    return out


def _short(column: str) -> str:
    return escape(column.removeprefix("hp_"))


def zoo_map_figure(embedding: ModelEmbedding, points: pd.DataFrame, *, color_by: str | None = None,
                   hover: Sequence[str] = (), title: str | None = None) -> go.Figure:
    """Every model a point on the map.

    Parameters
    ----------
    embedding : ModelEmbedding
    points : pd.DataFrame
        One row per model in ``embedding.labels`` order, with ``label``, ``run_id`` and any
        columns to colour by or show on hover (e.g. ``cluster``, ``hp_lr``, ``final_test_acc``).
    color_by : str, optional
        A column: numbers get a colour scale, anything else one colour per value.
    hover : sequence of str
        Columns listed in the hover text.
    """
    if len(points) != len(embedding.labels):
        raise ValueError(f"points has {len(points)} rows for {len(embedding.labels)} models; one row per model")
    xy = embedding.coords
    fig = go.Figure()
    text = _hover(points, hover)
    values = points[color_by] if color_by in points.columns else None
    # a metric gets a colour scale; a hyperparameter with a few values one colour per value
    numeric = (values is not None and pd.api.types.is_numeric_dtype(values)
               and (not color_by.startswith("hp_") or values.nunique() > 6))
    if values is None or numeric:
        marker = dict(size=11, line=dict(width=1, color="white"))
        if numeric:
            marker.update(color=values.to_numpy(dtype=float), colorscale="Viridis", showscale=True,
                          colorbar=dict(title=escape(color_by.removeprefix("hp_").removeprefix("final_"))))
        fig.add_trace(go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", marker=marker, text=text,
                                 hovertemplate="%{text}<extra></extra>", customdata=points[["run_id"]].to_numpy(),
                                 name="models", showlegend=False))
    else:
        for gi, value in enumerate(sorted(values.dropna().unique().tolist(), key=str)):
            mask = (values == value).to_numpy()
            fig.add_trace(go.Scatter(
                x=xy[mask, 0], y=xy[mask, 1], mode="markers", text=[t for t, m in zip(text, mask) if m],
                marker=dict(size=11, color=PALETTE[gi % len(PALETTE)], line=dict(width=1, color="white")),
                hovertemplate="%{text}<extra></extra>", customdata=points.loc[mask, ["run_id"]].to_numpy(),
                name=escape(value) if color_by == "cluster" else f"{_short(color_by)}={escape(value)}"))
    axis = "MDS" if embedding.method == "mds" else "UMAP"
    fig.update_xaxes(title=f"{axis} 1", zeroline=False)
    fig.update_yaxes(title=f"{axis} 2", zeroline=False, scaleanchor="x" if embedding.method == "mds" else None)
    fig.update_layout(dragmode="lasso", clickmode="event+select")
    return finish(fig, title=title, height=480)


def dendrogram_figure(clusters: ZooClusters, *, label: str = "distance", title: str | None = None) -> go.Figure:
    """The merge tree of the clustering, leaves coloured by cluster, with the cut as a dashed line."""
    fig = go.Figure()
    k = len(clusters.labels)
    if k < 2:
        return finish(fig, title="one model: nothing to merge")
    tree = dendrogram(clusters.linkage, no_plot=True, labels=list(clusters.labels))
    for xs, ys in zip(tree["icoord"], tree["dcoord"]):
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="#555", width=1.5), hoverinfo="skip",
                                 showlegend=False))
    leaves = tree["ivl"]
    cluster_of = dict(zip(clusters.labels, clusters.clusters))
    x = 5.0 + 10.0 * np.arange(len(leaves))
    colors = [PALETTE[(cluster_of[name] - 1) % len(PALETTE)] for name in leaves]
    fig.add_trace(go.Scatter(x=x, y=np.zeros(len(leaves)), mode="markers", marker=dict(size=10, color=colors),
                             text=[f"{escape(n)} · cluster {cluster_of[n]}" for n in leaves],
                             hovertemplate="%{text}<extra></extra>", showlegend=False))
    fig.add_hline(y=clusters.threshold, line=dict(color="#D55E00", dash="dash"),
                  annotation_text=f"cut {clusters.threshold:.3g} → {clusters.n_clusters} clusters",
                  annotation_position="top right")
    fig.update_xaxes(tickvals=x, ticktext=[escape(n) for n in leaves], tickangle=-60)
    fig.update_yaxes(title=f"merge height ({escape(label)})", rangemode="tozero")
    return finish(fig, title=title or f"{clusters.method}-linkage merge tree", height=420)


def distance_heatmap(distances: ZooDistances, order: Sequence[int] | None = None) -> go.Figure:
    """The distance matrix, rows and columns in ``order`` (e.g. the dendrogram's leaves); blank where undefined."""
    idx = list(order) if order is not None else list(range(len(distances.labels)))
    labels = [escape(distances.labels[i]) for i in idx]
    z = distances.matrix[np.ix_(idx, idx)]
    fig = go.Figure(go.Heatmap(z=z, x=labels, y=labels, colorscale="Viridis", hoverongaps=False,
                               colorbar=dict(title=escape(distances.metric)),
                               hovertemplate="%{y} – %{x}: %{z:.4g}<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    return finish(fig, title=escape(distances.description), height=460)


def trajectory_map_figure(embedding: ModelEmbedding, points: pd.DataFrame, *, title: str | None = None
                          ) -> go.Figure:
    """Each run's checkpoints as a path across one map, from its first checkpoint (open circle) to its last.

    ``points`` has one row per embedded checkpoint with ``label``, ``run_id``, ``run_name`` and ``step``.
    """
    if len(points) != len(embedding.labels):
        raise ValueError(f"points has {len(points)} rows for {len(embedding.labels)} checkpoints; one row each")
    fig = go.Figure()
    frame = points.assign(x=embedding.coords[:, 0], y=embedding.coords[:, 1])
    for gi, (run_id, run) in enumerate(frame.groupby("run_id", sort=False)):
        run = run.sort_values("step")
        color = PALETTE[gi % len(PALETTE)]
        name = escape(run["run_name"].iloc[0])
        fig.add_trace(go.Scatter(
            x=run["x"], y=run["y"], mode="lines+markers", name=name, line=dict(color=color, width=1.5),
            marker=dict(size=np.linspace(6, 12, len(run)), color=color),
            text=[f"{name} · step {s}" for s in run["step"]], hovertemplate="%{text}<extra></extra>",
            customdata=np.array([[run_id]] * len(run))))
        fig.add_trace(go.Scatter(x=run["x"].iloc[:1], y=run["y"].iloc[:1], mode="markers", showlegend=False,
                                 marker=dict(size=12, color="white", line=dict(color=color, width=2)),
                                 hoverinfo="skip"))
    fig.update_xaxes(title="MDS 1" if embedding.method == "mds" else "UMAP 1", zeroline=False)
    fig.update_yaxes(title="MDS 2" if embedding.method == "mds" else "UMAP 2", zeroline=False)
    return finish(fig, title=title, height=480)
