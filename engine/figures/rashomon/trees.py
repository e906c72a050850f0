"""Figures for sparse-tree Rashomon sets: sunburst of splits, tree diagram, list, usage.

References
----------
.. [1] Z. J. Wang et al., "TimberTrek: Exploring and Curating Sparse Decision Trees
   with Interactive Visualization", IEEE VIS, 2022 (sunburst of splits by depth).
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import plotly.graph_objects as go

from engine.probes.rashomon import TreeRashomonSet, tree_to_dict

from ..style import escape

__all__ = ["tree_sunburst", "tree_diagram", "tree_list_table", "tree_feature_usage", "tree_set_scatter",
           "filter_trees"]

TEMPLATE = "plotly_white"
SPLIT, LEAF0, LEAF1 = "#56B4E9", "#E69F00", "#009E73"


def _finish(fig: go.Figure, title: str, height: int = 460) -> go.Figure:
    fig.update_layout(template=TEMPLATE, height=height, title=escape(title),
                      margin=dict(l=30, r=20, t=60, b=30))
    return fig


def filter_trees(trees: TreeRashomonSet, *, accuracy=(0.0, 1.0), max_depth: int | None = None,
                 max_leaves: int | None = None, must_use=(), must_not_use=()) -> np.ndarray:
    """Indices of trees passing TimberTrek-style filters (accuracy range, size, features)."""
    names = list(trees.feature_names)
    keep = (trees.accuracy >= accuracy[0]) & (trees.accuracy <= accuracy[1])
    if max_depth is not None:
        keep &= trees.depth <= max_depth
    if max_leaves is not None:
        keep &= trees.n_leaves <= max_leaves
    for f in must_use:
        keep &= trees.features_used[:, names.index(f)]
    for f in must_not_use:
        keep &= ~trees.features_used[:, names.index(f)]
    return np.flatnonzero(keep)


def _layers(trees: TreeRashomonSet, t: int) -> list[str]:
    """Breadth-first layers of a tree as strings ("a2_1 | a5_1 · 1"), TimberTrek's trie key."""
    out, level = [], [0]
    while level:
        words, nxt = [], []
        for node in level:
            f = int(trees.feature[t, node])
            if f < 0:
                words.append(f"→{trees.classes[int(trees.prediction[t, node])]}")
            else:
                words.append(trees.feature_names[f])
                nxt += [int(trees.true_child[t, node]), int(trees.false_child[t, node])]
        out.append(" · ".join(words))
        level = nxt
    return out


def tree_sunburst(trees: TreeRashomonSet, *, indices=None, max_trees: int = 5000) -> go.Figure:
    """Sunburst of the set: ring k holds the splits at depth k, arcs sized by tree count."""
    idx = np.arange(trees.size) if indices is None else np.asarray(indices)
    idx = idx[:max_trees]
    counts: Counter = Counter()
    for t in idx:
        path = ""
        for layer in _layers(trees, int(t)):
            path = f"{path}/{layer}"
            counts[path] += 1
    ids = list(counts)
    parents = [p.rsplit("/", 1)[0] for p in ids]
    labels = [escape(p.rsplit("/", 1)[1]) for p in ids]
    fig = go.Figure(go.Sunburst(ids=ids, parents=parents, labels=labels, values=[counts[i] for i in ids],
                                branchvalues="total", maxdepth=4,
                                hovertemplate="%{label}<br>%{value} trees<extra></extra>"))
    return _finish(fig, f"{len(idx)} trees by their splits at each depth")


def _layout(node: dict, depth: int, pos: dict, counter: list, key: str = "r") -> None:
    """Leaves get consecutive x; internal nodes sit above the middle of their children."""
    if "prediction" in node:
        pos[key] = (counter[0], -depth, node)
        counter[0] += 1
        return
    _layout(node["true"], depth + 1, pos, counter, key + "t")
    _layout(node["false"], depth + 1, pos, counter, key + "f")
    pos[key] = ((pos[key + "t"][0] + pos[key + "f"][0]) / 2, -depth, node)


def tree_diagram(trees: TreeRashomonSet, index: int) -> go.Figure:
    """The selected tree drawn top-down: splits as boxes, true (=1) branch on the left."""
    pos: dict = {}
    _layout(tree_to_dict(trees, index), 0, pos, [0])
    ex, ey, mid_x, mid_y, mid_t = [], [], [], [], []
    for key, (x, y, node) in pos.items():
        if "prediction" not in node:
            for child, word in ((key + "t", "= 1"), (key + "f", "= 0")):
                cx, cy, _ = pos[child]
                ex += [x, cx, None]
                ey += [y, cy, None]
                mid_x.append((x + cx) / 2)
                mid_y.append((y + cy) / 2)
                mid_t.append(word)
    fig = go.Figure(go.Scatter(x=ex, y=ey, mode="lines", line=dict(color="#888"), hoverinfo="skip",
                               showlegend=False))
    fig.add_trace(go.Scatter(x=mid_x, y=mid_y, mode="text", text=mid_t, showlegend=False, hoverinfo="skip",
                             textfont=dict(size=10, color="#555")))
    xs, ys, texts, colors = [], [], [], []
    for x, y, node in pos.values():
        xs.append(x)
        ys.append(y)
        if "prediction" in node:
            texts.append(f"class {escape(str(node['prediction']))}")
            colors.append(LEAF1 if str(node["prediction"]) not in ("0", "False") else LEAF0)
        else:
            texts.append(escape(node["feature"]))
            colors.append(SPLIT)
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers+text", text=texts, textposition="middle center",
                             marker=dict(symbol="square", size=38, color=colors, opacity=0.35),
                             showlegend=False, hoverinfo="text"))
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _finish(fig, f"tree {index}: objective {trees.objective[index]:.4f}, accuracy "
                        f"{trees.accuracy[index]:.3f}, {int(trees.n_leaves[index])} leaves",
                   140 + 90 * int(trees.depth[index]))


def tree_list_table(trees: TreeRashomonSet, *, indices=None, order_by: str = "objective",
                    limit: int = 200) -> go.Figure:
    """Sortable list of trees: objective, accuracy, leaves, depth, features used."""
    keys = {"objective": trees.objective, "accuracy": -trees.accuracy, "leaves": trees.n_leaves,
            "depth": trees.depth, "features": trees.features_used.sum(1)}
    if order_by not in keys:
        raise ValueError(f"order_by must be one of {sorted(keys)}; got {order_by!r}")
    idx = np.arange(trees.size) if indices is None else np.asarray(indices)
    idx = idx[np.argsort(keys[order_by][idx], kind="stable")][:limit]
    used = [", ".join(escape(trees.feature_names[j]) for j in np.flatnonzero(trees.features_used[t]))
            for t in idx]
    cells = [idx, np.round(trees.objective[idx], 5), np.round(trees.accuracy[idx], 4),
             trees.n_leaves[idx], trees.depth[idx], used]
    fig = go.Figure(go.Table(header=dict(values=["tree", "objective", "accuracy", "leaves", "depth",
                                                 "features used"]),
                             cells=dict(values=cells)))
    return _finish(fig, f"{len(idx)} of {trees.size} trees (kept {trees.size}, dropped "
                        f"{trees.n_dropped} above the bound)", 480)


def tree_feature_usage(trees: TreeRashomonSet, *, indices=None) -> go.Figure:
    """Share of trees in the set that split on each feature."""
    idx = np.arange(trees.size) if indices is None else np.asarray(indices)
    share = trees.features_used[idx].mean(0) if len(idx) else np.zeros(len(trees.feature_names))
    order = np.argsort(-share, kind="stable")
    names = [escape(trees.feature_names[j]) for j in order]
    fig = go.Figure(go.Bar(x=names, y=share[order], marker_color=SPLIT,
                           hovertemplate="%{x}<br>%{y:.1%} of trees<extra></extra>"))
    fig.update_yaxes(title="share of trees using the feature", tickformat=".0%")
    return _finish(fig, "Feature usage across the tree Rashomon set", 360)


def tree_set_scatter(trees: TreeRashomonSet) -> go.Figure:
    """Objective against number of leaves (jittered), with the Rashomon bound."""
    jitter = (np.random.default_rng(0).random(trees.size) - 0.5) * 0.3
    fig = go.Figure(go.Scattergl(
        x=trees.n_leaves + jitter, y=trees.objective, mode="markers", customdata=np.arange(trees.size),
        marker=dict(color=trees.accuracy, colorscale="Viridis", showscale=True,
                    colorbar=dict(title="accuracy"), size=6),
        hovertemplate="tree %{customdata}<br>objective %{y:.5f}<extra></extra>"))
    fig.add_hline(y=trees.bound, line=dict(dash="dash", color="#D55E00"),
                  annotation_text=f"(1 + {trees.rashomon_multiplier:g}) × optimum (relative ε)")
    fig.update_xaxes(title="leaves")
    fig.update_yaxes(title=f"objective = error + {trees.regularization:g} × leaves")
    return _finish(fig, f"{trees.size} trees in the Rashomon set", 400)
