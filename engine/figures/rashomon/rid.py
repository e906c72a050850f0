"""The Rashomon importance distribution (RID) per feature, as boxes or CDFs, beside the
variable importance cloud of one Rashomon set.

RID is a weighted mixture (every bootstrap weighs the same), so its boxes are drawn from
its weighted quantiles — box 25–75 %, whiskers 5–95 %, the line the median, the dashed
line the mean — not from the raw rows.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.probes.rashomon import ImportanceCloud, ImportanceDistribution

from ..style import PALETTE, escape, finish

__all__ = ["rid_figure"]

_LEVELS = (0.05, 0.25, 0.5, 0.75, 0.95)


def _feature_order(rid: ImportanceDistribution, order: str) -> np.ndarray:
    if order not in ("mean", "input"):
        raise ValueError(f"order must be 'mean' or 'input'; got {order!r}")
    return np.argsort(-rid.mean, kind="stable") if order == "mean" else np.arange(len(rid.feature_names))


def _boxes(fig, rid: ImportanceDistribution, feats, names, label: str, color: str, col: int, show: bool) -> None:
    q = rid.quantile(_LEVELS)[:, feats]  # (5, F)
    hover = [f"{n}<br>P(importance > {rid.importance_threshold:g}) = {p:.2f}<br>median {m:.4g}, mean {mu:.4g}"
             for n, p, m, mu in zip(names, rid.prob_above[feats], q[2], rid.mean[feats])]
    fig.add_trace(go.Box(y=names, lowerfence=q[0], q1=q[1], median=q[2], q3=q[3], upperfence=q[4],
                         mean=rid.mean[feats], orientation="h", name=escape(label), marker_color=color,
                         legendgroup=label, showlegend=show, hovertext=hover, hoverinfo="text"), row=1, col=col)


def _cdfs(fig, rid: ImportanceDistribution, feats, names, col: int) -> None:
    lo, hi = float(rid.values.min()), float(rid.values.max())
    grid = np.linspace(lo - 0.02 * (hi - lo + 1e-12), hi + 0.02 * (hi - lo + 1e-12), 200)
    cdf = rid.cdf(grid)  # (K, D)
    for rank, (j, name) in enumerate(zip(feats, names)):
        fig.add_trace(go.Scatter(x=grid, y=cdf[:, j], mode="lines", line_shape="hv", name=name,
                                 line_color=PALETTE[rank % len(PALETTE)],
                                 hovertemplate=name + "<br>RID(%{x:.4g}) = %{y:.3f}<extra></extra>"), row=1, col=col)


def rid_figure(rid: ImportanceDistribution | Mapping[str, ImportanceDistribution], *,
               cloud: ImportanceCloud | None = None, kind: str = "box", order: str = "mean",
               title: str | None = None) -> go.Figure:
    """Each feature's Rashomon importance distribution, optionally beside a variable importance cloud.

    Parameters
    ----------
    rid : ImportanceDistribution or dict label -> ImportanceDistribution
        Several (e.g. sparse trees and logistic regression on one data set) are drawn as
        grouped boxes; they must share feature names.
    cloud : ImportanceCloud, optional
        The cloud of one Rashomon set (no bootstraps), drawn to the right on the same features.
    kind : {"box", "cdf"}
        Boxes from weighted quantiles (whiskers 5–95 %), or each feature's CDF RID_j(k).
    order : {"mean", "input"}
        Features by expected importance under (the first) RID, or as given.
    title : str, optional

    Returns
    -------
    go.Figure
    """
    if kind not in ("box", "cdf"):
        raise ValueError(f"kind must be 'box' or 'cdf'; got {kind!r}")
    rids = dict(rid) if isinstance(rid, Mapping) else {"RID": rid}
    if not rids:
        raise ValueError("rid must hold at least one ImportanceDistribution; got an empty mapping")
    first = next(iter(rids.values()))
    if any(r.feature_names != first.feature_names for r in rids.values()):
        raise ValueError("every RID must have the same feature names to be drawn together")
    if kind == "cdf" and len(rids) > 1:
        raise ValueError(f"kind='cdf' draws one RID; got {len(rids)}: draw them one by one or as boxes")
    if cloud is not None and len(cloud.feature_names) != len(first.feature_names):
        raise ValueError(f"the cloud has {len(cloud.feature_names)} features, the RID {len(first.feature_names)}: "
                         "draw a cloud of the same data set beside it")
    feats = _feature_order(first, order)
    names = [escape(first.feature_names[j]) for j in feats]
    cols = 2 if cloud is not None else 1
    subtitles = [f"RID over {first.n_bootstraps} bootstrap resamples"] + (
        [f"one set's importance cloud ({cloud.mean.shape[0]} models)"] if cloud is not None else [])
    fig = make_subplots(rows=1, cols=cols, shared_yaxes=kind == "box", horizontal_spacing=0.06,
                        column_widths=[0.6, 0.4][:cols] if cols == 2 else None, subplot_titles=subtitles)
    for i, (label, r) in enumerate(rids.items()):
        if kind == "box":
            _boxes(fig, r, feats, names, label, PALETTE[i % len(PALETTE)], 1, len(rids) > 1)
        else:
            _cdfs(fig, r, feats, names, 1)
    if kind == "box":
        fig.update_layout(boxmode="group")
        fig.update_yaxes(autorange="reversed", row=1, col=1)
        fig.add_vline(x=first.importance_threshold, line_dash="dot", line_color="#7F7F7F", row=1, col=1)
        fig.update_xaxes(title=f"importance ({escape(first.metric)})", row=1, col=1)
    else:
        fig.update_xaxes(title=f"importance k ({escape(first.metric)})", row=1, col=1)
        fig.update_yaxes(title="RID(k) = P(importance ≤ k)", range=[0, 1.02], row=1, col=1)
    if cloud is not None:
        for j, name in zip(feats, names):
            cname = escape(cloud.feature_names[j])
            fig.add_trace(go.Box(x=cloud.mean[:, j], y=[name] * cloud.mean.shape[0], orientation="h",
                                 name="importance cloud", legendgroup="cloud", showlegend=False,
                                 marker_color="#7F7F7F", boxpoints="outliers",
                                 hovertemplate=cname + "<br>importance %{x:.4g}<extra></extra>"), row=1, col=2)
        what = "drop in accuracy" if cloud.metric == "accuracy" else "rise in loss"
        fig.update_xaxes(title=f"importance ({what})", row=1, col=2)
        if kind != "box":
            fig.update_yaxes(autorange="reversed", row=1, col=2)
    height = max(360, 90 + 28 * len(names) * (len(rids) if kind == "box" else 1) ** 0.5)
    return finish(fig, title=title, height=int(height))
