"""Figures for the topology of a 2D loss surface: basins on the contours, the persistence diagram, the merge tree.

Each takes a :class:`engine.probes.landscape.topology.SurfacePersistence` and a persistence
threshold: minima whose basins are deeper than it are kept (drawn in colour, outlined on
the contours); the others are merged into the basin that absorbs them.
"""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.figures.style import PALETTE, finish

__all__ = ["persistence_figure"]

_GREY = "#9a9a9a"


def _axes(p) -> tuple[np.ndarray, np.ndarray]:
    r1, r2 = p.values.shape
    return (np.arange(r1, dtype=float) if p.alphas is None else np.asarray(p.alphas),
            np.arange(r2, dtype=float) if p.betas is None else np.asarray(p.betas))


def _colour(rank: int) -> str:
    return PALETTE[rank % len(PALETTE)]


def _contours(fig: go.Figure, p, kept: np.ndarray, threshold: float) -> None:
    a, b = _axes(p)
    shown = np.where(np.isfinite(p.values), p.values, np.nan)
    fig.add_trace(go.Contour(x=a, y=b, z=shown.T, colorscale="Viridis", ncontours=30, showscale=False,
                             name="loss", hovertemplate="a=%{x:.3f}<br>b=%{y:.3f}<br>loss=%{z:.4g}<extra></extra>"),
                  1, 1)
    labels = p.basins(threshold)
    for rank, k in enumerate(kept):
        inside = (labels == k).astype(float)
        fig.add_trace(go.Contour(x=a, y=b, z=inside.T, showscale=False, hoverinfo="skip", name=f"basin {k}",
                                 contours=dict(start=0.5, end=0.5, size=1, coloring="none"),
                                 line=dict(color=_colour(rank), width=3), showlegend=False), 1, 1)
    for rank, k in enumerate(kept):
        i, j = p.minima[k]
        fig.add_trace(go.Scatter(x=[a[i]], y=[b[j]], mode="markers", showlegend=False,
                                 marker=dict(color=_colour(rank), size=11, symbol="circle", line=dict(width=1)),
                                 cliponaxis=False,  # a minimum on the grid's edge is drawn whole
                                 hovertemplate=f"minimum {k}<br>loss={p.birth[k]:.4g}<br>"
                                               f"depth={_depth_text(p, k)}<extra></extra>"), 1, 1)
    dead = [k for k in range(len(p.birth)) if p.death[k] < np.inf and k in set(kept)]
    if dead:
        s = p.saddles[dead]
        fig.add_trace(go.Scatter(x=a[s[:, 0]], y=b[s[:, 1]], mode="markers", name="merge saddle",
                                 marker=dict(color="white", size=10, symbol="x", line=dict(width=2, color="black")),
                                 cliponaxis=False, customdata=np.stack([p.death[dead], np.asarray(dead)], 1),
                                 hovertemplate="saddle of minimum %{customdata[1]}<br>loss=%{customdata[0]:.4g}"
                                               "<extra></extra>"), 1, 1)


def _depth_text(p, k: int) -> str:
    return "∞ (global minimum)" if not np.isfinite(p.death[k]) else f"{p.persistence[k]:.4g}"


def _diagram(fig: go.Figure, p, threshold: float, top: float, kept: np.ndarray) -> None:
    finite = np.isfinite(p.death)
    lo = float(p.birth.min())
    fig.add_trace(go.Scatter(x=[lo, top], y=[lo, top], mode="lines", line=dict(color=_GREY, dash="dot"),
                             hoverinfo="skip", showlegend=False), 1, 2)
    fig.add_trace(go.Scatter(x=[lo, top], y=[lo + threshold, top + threshold], mode="lines", name="threshold",
                             line=dict(color=PALETTE[3], dash="dash", width=1), hoverinfo="skip"), 1, 2)
    deep = finite & (p.persistence > threshold)
    rank = {int(k): r for r, k in enumerate(kept)}  # a kept basin has its colour on the contours and in the tree
    for mask, name in ((finite & ~deep, "merged (shallow)"), (deep, "kept basin")):
        idx = np.flatnonzero(mask)
        colours = [_colour(rank[k]) if k in rank else _GREY for k in idx.tolist()]
        fig.add_trace(go.Scatter(x=p.birth[idx], y=p.death[idx], mode="markers", name=name,
                                 marker=dict(color=colours, size=8), customdata=np.stack([idx, p.persistence[idx]], 1),
                                 hovertemplate="minimum %{customdata[0]}<br>birth=%{x:.4g}<br>death=%{y:.4g}"
                                               "<br>depth=%{customdata[1]:.4g}<extra></extra>"), 1, 2)
    g = np.flatnonzero(~finite)
    fig.add_trace(go.Scatter(x=p.birth[g], y=np.full(len(g), top), mode="markers", name="global minimum (∞)",
                             marker=dict(color=[_colour(rank.get(int(k), 0)) for k in g], size=11,
                                         symbol="triangle-up", line=dict(width=1, color="black")),
                             hovertemplate="global minimum<br>birth=%{x:.4g}<br>never dies<extra></extra>"), 1, 2)


def _tree_layout(p) -> tuple[np.ndarray, np.ndarray]:
    """x (leaf order from the tree, merged nodes between their children) and y (height) of every node."""
    m = len(p.birth)
    children = {m + k: (int(r[0]), int(r[1])) for k, r in enumerate(p.merges)}
    xs, ys = np.zeros(m + len(p.merges)), np.concatenate([p.birth, p.merges[:, 2]])
    roots = set(range(m + len(p.merges))) - {c for pair in children.values() for c in pair}
    order = []
    stack = sorted(roots, reverse=True)
    while stack:  # depth-first, elder child first: leaves left to right
        node = stack.pop()
        if node in children:
            stack += [children[node][1], children[node][0]]
        else:
            order.append(node)
    xs[order] = np.arange(len(order))
    for node in sorted(children):  # children are numbered before their parent
        xs[node] = xs[list(children[node])].mean()
    return xs, ys


def _merge_tree(fig: go.Figure, p, kept: np.ndarray, top: float) -> None:
    xs, ys = _tree_layout(p)
    seg_x, seg_y = [], []
    for a, b, h, _ in p.merges:
        a, b = int(a), int(b)
        seg_x += [xs[a], xs[a], xs[b], xs[b], None]
        seg_y += [ys[a], h, h, ys[b], None]
    root = int(np.argmax(ys)) if len(p.merges) else 0
    seg_x += [xs[root], xs[root], None]
    seg_y += [ys[root], top, None]
    fig.add_trace(go.Scatter(x=seg_x, y=seg_y, mode="lines", line=dict(color=_GREY), hoverinfo="skip",
                             showlegend=False), 1, 3)
    rank = {int(k): r for r, k in enumerate(kept)}
    m = len(p.birth)
    colours = [_colour(rank[k]) if k in rank else _GREY for k in range(m)]
    fig.add_trace(go.Scatter(x=xs[:m], y=ys[:m], mode="markers", marker=dict(color=colours, size=9),
                             customdata=np.stack([np.arange(m), np.where(np.isfinite(p.persistence),
                                                                         p.persistence, np.nan)], 1),
                             hovertemplate="minimum %{customdata[0]}<br>loss=%{y:.4g}<br>depth=%{customdata[1]:.4g}"
                                           "<extra></extra>", showlegend=False), 1, 3)
    if len(p.merges):
        fig.add_trace(go.Scatter(x=xs[m:], y=ys[m:], mode="markers", showlegend=False,
                                 marker=dict(color="white", size=8, symbol="x", line=dict(width=2, color="black")),
                                 hovertemplate="saddle<br>loss=%{y:.4g}<extra></extra>"), 1, 3)


def persistence_figure(persistence, *, threshold: float = 0.0, title: str | None = None) -> go.Figure:
    """Contours with the basins outlined, the persistence diagram and the merge tree, side by side.

    Parameters
    ----------
    persistence : engine.probes.landscape.topology.SurfacePersistence
    threshold : float
        Basins at most this deep are merged into the basin that absorbs them; the rest are
        outlined on the contours, coloured in the diagram and the tree.
    """
    if threshold < 0:
        raise ValueError(f"threshold must be at least 0; got {threshold!r}")
    p = persistence
    kept = p.kept(threshold)
    finite = p.values[np.isfinite(p.values)]
    span = float(finite.max() - finite.min()) if finite.size else 1.0
    top = float(finite.max()) + 0.05 * (span or 1.0)
    fig = make_subplots(rows=1, cols=3, column_widths=[0.42, 0.29, 0.29], horizontal_spacing=0.1,
                        subplot_titles=("basins on the contours", "persistence diagram", "merge tree"))
    _contours(fig, p, kept, threshold)
    _diagram(fig, p, threshold, top, kept)
    _merge_tree(fig, p, kept, top)
    fig.update_xaxes(title_text="a", row=1, col=1)
    fig.update_yaxes(title_text="b", row=1, col=1)
    fig.update_xaxes(title_text="birth (loss at the minimum)", row=1, col=2)
    fig.update_yaxes(title_text="death (loss at the merge saddle)", row=1, col=2)
    fig.update_xaxes(showticklabels=False, title_text="minima", row=1, col=3)
    fig.update_yaxes(title_text="loss", row=1, col=3)
    m = len(p.birth)
    default = (f"Topology of the surface: {len(kept)} basin{'s' if len(kept) != 1 else ''} deeper than "
               f"{threshold:.3g} in loss ({m} {'minimum' if m == 1 else 'minima'}, {p.connectivity}-connected grid)")
    fig = finish(fig, title=title or default, height=480)
    return fig.update_layout(margin=dict(t=90))  # the title above the panels' own titles
