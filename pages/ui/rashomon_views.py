"""Rashomon page panels: the ε controls and the set, then the linked panels (multiplicity, importance
cloud, interactions, tree browser) for the members or for the models selected in the scatter.

The view they draw is a :class:`~pages.ui.rashomon_model.RashomonView` from one of the sources in
``rashomon_sources.py``; ε filters it inline, on stored losses."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import streamlit as st

from engine.figures import rashomon as rashfig
from engine.probes.rashomon import (
    multiplicity_curve,
    pattern_rashomon_ratio,
    predictive_multiplicity,
    rashomon_curve,
    rashomon_set,
    tree_rules,
)

from .rashomon_model import MODES, PATTERN_LIMIT, RashomonView, eps_range
from .rashomon_rid_views import rid_panel
from .state import set_query, synced_selectbox
from .text import literal

__all__ = ["rashomon_panels"]


# -- ε, membership and the linked selection -------------------------------------------------------------

def _eps_slider(losses: np.ndarray, mode: str, cap: float | None) -> float:
    """ε slider kept in ``?eps=``; its range follows the metric and convention.

    Starts at the whole stored set for a sampled or enumerated set (``cap``), else at 5% relative
    (a quarter of the range absolute).
    """
    hi, step = eps_range(losses, mode, cap)
    if "rs_eps" not in st.session_state:
        try:
            st.session_state["rs_eps"] = float(st.query_params.get("eps", ""))
        except ValueError:
            st.session_state["rs_eps"] = hi if cap is not None else min(hi, 0.05) if mode == "relative" else hi / 4
    st.session_state["rs_eps"] = float(min(max(st.session_state["rs_eps"], 0.0), hi))
    decimals = max(0, -math.floor(math.log10(step)))
    eps = st.slider(f"ε ({MODES[mode]})", 0.0, hi, step=step, key="rs_eps", format=f"%.{decimals}f")
    set_query(eps=f"{eps:.{decimals}f}")
    return eps


def _selection(event) -> list[int]:
    points = getattr(getattr(event, "selection", None), "points", None) or []
    return sorted({int(p["customdata"]) for p in points if p.get("curve_number", 0) == 0 and "customdata" in p})


@st.fragment
def rashomon_panels(view: RashomonView) -> None:
    """ε controls, the set, and the linked panels; a fragment, so moving ε reruns only this."""
    for note in view.notes:
        st.caption(literal(note))
    metric, mode, eps = _controls(view)
    losses = view.metrics[metric]
    rs = rashomon_set(losses, epsilon=eps, mode=mode)
    best = int(rs.indices[0])
    _readouts(view, rs, metric)
    hi, _ = eps_range(losses, mode, view.cap)
    grid = np.linspace(0.0, hi, 60)
    chosen = _set_figures(view, losses, metric, eps, mode, grid)
    active = np.asarray(chosen) if chosen else rs.indices
    what = (f"the {len(chosen)} model{'s' * (len(chosen) != 1)} selected in the scatter "
            f"({int(rs.members[chosen].sum())} of them in the set; double-click the scatter to clear)" if chosen
            else f"the {rs.size} member{'s' * (rs.size != 1)} at ε = {eps:g}")
    st.markdown(f"**The panels below show {what}.**")
    panels = {"Multiplicity": lambda: _multiplicity(view, losses, grid, mode, eps, active, best),
              "Importance cloud": lambda: _importance(view, losses, active, best),
              "Importance distribution (RID)": lambda: rid_panel(view),
              "Interactions (FIS)": lambda: _interactions(view, active, best)}
    if view.trees is not None:
        panels["Tree browser"] = lambda: _tree_browser(view, active)
    # only the open tab is drawn (``?rs_tab=``), so a slider move redraws one panel, not all of them
    for tab, draw in zip(st.tabs(list(panels), key="rs_tab", bind="query-params"), panels.values()):
        if tab.open:
            with tab:
                draw()


def _controls(view: RashomonView) -> tuple[str, str, float]:
    """The loss, the ε convention and ε (all kept in the URL)."""
    c = st.columns([2, 2, 3])
    metric = synced_selectbox("Loss", list(view.metrics), key="rs_metric", container=c[0])
    mode = synced_selectbox("ε convention", list(MODES), key="rs_mode", format_func=MODES.get, container=c[1])
    losses = view.metrics[metric]
    if mode == "relative" and losses.min() <= 0:
        st.warning(f"The best {literal(metric)} is {losses.min():.3g}: a relative ε needs a positive best loss "
                   "(every ε gives the same set). Use the absolute convention for this loss.")
    with c[2]:
        return metric, mode, _eps_slider(losses, mode, view.cap)


def _readouts(view: RashomonView, rs, metric: str) -> None:
    losses = view.metrics[metric]
    m = st.columns(4)
    m[0].metric("Models in the set", f"{rs.size} of {len(losses)}", help=rs.label)
    m[1].metric("Threshold", f"{rs.threshold:.4g}",
                help=f"{literal(rs.label)}; best {literal(metric)} {rs.reference_loss:.4g}")
    if view.preds is not None and view.preds.size <= PATTERN_LIMIT:
        n = len(view.preds)
        pr = pattern_rashomon_ratio(view.preds, losses[:n], epsilon=rs.epsilon, mode=rs.mode,
                                    reference_loss=rs.reference_loss)
        m[2].metric("Distinct prediction patterns", f"{pr.n_members} of {pr.n_samples}",
                    help="Pattern Rashomon ratio (Semenova et al. 2022): distinct held-out prediction vectors "
                         "among the members / among all models shown")
    m[3].metric("Best loss", f"{rs.reference_loss:.4g}", help=f"the smallest {literal(metric)}: L* in the condition")
    best = int(rs.indices[0])
    st.caption(f"Membership: {literal(rs.label)}, on the {literal(metric)}; best model: "
               f"{literal(view.labels[best] if view.labels else best)}.")


def _set_figures(view: RashomonView, losses, metric: str, eps: float, mode: str, grid) -> list[int]:
    """Loss-vs-model scatter (box/lasso selection) and set size vs ε; returns the selected models."""
    left, right = st.columns([3, 2])
    labels = view.labels if len(losses) <= 500 else None  # per-point strings cost ~0.1 ms each to draw
    fig = rashfig.rashomon_scatter(losses, epsilon=eps, mode=mode, labels=labels, metric_name=metric)
    event = left.plotly_chart(fig, key="rs_scatter", on_select="rerun", selection_mode=("box", "lasso"))
    right.plotly_chart(rashfig.rashomon_size_curve(rashomon_curve(losses, grid, mode=mode), epsilon=eps),
                       key="rs_size")
    return [i for i in _selection(event) if i < len(losses)]


# -- panels -------------------------------------------------------------------------------------------

def _multiplicity(view, losses, grid, mode, eps, active, best) -> None:
    if view.preds is None:
        st.info("Predictive multiplicity needs class predictions; this is a regression task.")
        return
    n = len(view.preds)
    active = active[active < n]
    if best >= n or not len(active):
        st.info("No stored predictions for these models.")
        return
    curve = multiplicity_curve(losses[:n], view.probs if view.probs is not None else view.preds, grid, mode=mode,
                               reference_index=best)
    src = view.probs if view.probs is not None else view.preds
    pm = predictive_multiplicity(src[active], view.preds[best], n_classes=None if view.probs is not None else
                                 int(view.preds.max()) + 1)
    c = st.columns(3)
    c[0].metric("Ambiguity", f"{pm.ambiguity:.1%}", help="share of samples some model flips against the best model")
    c[1].metric("Discrepancy", f"{pm.discrepancy:.1%}", help="largest share of samples one model flips")
    c[2].metric("Samples", f"{len(pm.disagreement)}")
    left, right = st.columns(2)
    left.plotly_chart(rashfig.multiplicity_curve_figure(curve, epsilon=eps), key="rs_mcurve")
    right.plotly_chart(rashfig.disagreement_histogram(pm), key="rs_hist")
    feats = _top_features(view, 12)
    x = view.x[:, feats].astype(np.float64)  # float32 values print with float32 noise after rounding
    st.plotly_chart(rashfig.contested_samples_table(pm, x, [view.feature_names[j] for j in feats], k=10),
                    key="rs_contested")
    st.caption("Marx, Calmon & Ustun (2020): ambiguity and discrepancy against the best model; the curve is "
               "over all stored models as ε grows, the histogram and table over the models shown.")


def _top_features(view, k: int) -> list[int]:
    d = len(view.feature_names)
    if view.importance is not None:
        return np.sort(np.argsort(-view.importance.mean.mean(0), kind="stable")[:k]).tolist()
    return list(range(min(d, k)))


def _with_reference(active: np.ndarray, best: int) -> tuple[np.ndarray, int]:
    """Active models plus the reference (the best model), and the reference's position among them."""
    idx = np.union1d(active, [best])
    return idx, int(np.searchsorted(idx, best))


def _importance(view, losses, active, best) -> None:
    if view.trees is not None:
        st.plotly_chart(rashfig.tree_feature_usage(view.trees, indices=active), key="rs_usage")
        st.caption("Trees have no smooth loss to permute against here; the share of trees splitting on each "
                   "feature is the set's variable-use cloud.")
        return
    cloud = view.importance
    if cloud is None:
        st.info("Importance clouds need tabular inputs (samples × features); this data set has other inputs.")
        return
    c = st.columns(2)
    kind = synced_selectbox("Draw as", ["strip", "violin", "box"], key="rs_vic_kind", container=c[0])
    order = synced_selectbox("Order features by", ["mean", "range", "input"], key="rs_vic_order", container=c[1],
                             format_func={"mean": "mean importance", "range": "model class reliance range",
                                          "input": "input order"}.get)
    st.plotly_chart(rashfig.importance_cloud_figure(cloud, kind=kind, reference=best, selected=active, order=order),
                    key="rs_vic")
    mean = cloud.mean[active]
    table = pd.DataFrame({"feature": cloud.feature_names, "MCR− (min)": mean.min(0), "MCR+ (max)": mean.max(0),
                          "best model": cloud.mean[best]}).sort_values("MCR+ (max)", ascending=False)
    st.dataframe(table, hide_index=True, key="rs_mcr", height=min(400, 38 + 35 * len(table)))
    names = list(cloud.feature_names)
    top = _top_features(view, 2)
    c = st.columns(2)
    fi = synced_selectbox("Pair plot: x", names, key="rs_fi", default=names[top[0]], container=c[0])
    fj = synced_selectbox("Pair plot: y", names, key="rs_fj", default=names[top[-1]], container=c[1])
    idx, ref = _with_reference(active, best)
    sub = replace(cloud, importances=cloud.importances[idx], mean=cloud.mean[idx], baseline=cloud.baseline[idx])
    st.plotly_chart(rashfig.importance_pair_figure(sub, names.index(fi), names.index(fj), reference=ref,
                                                color=losses[idx], color_title="loss"), key="rs_pair")
    st.caption("Permutation importance = rise in loss when a feature is shuffled (model reliance, Fisher, Rudin "
               "& Dominici 2019), for every model: the variable importance cloud (Dong & Rudin 2020).")


def _interactions(view, active, best) -> None:
    inter = view.interactions
    if inter is None:
        st.info("Feature interaction scores need a neural model on tabular inputs (a zoo on tabular data or a "
                "sampled model class).")
        return
    st.plotly_chart(rashfig.fis_swarm_figure(inter, top=15, selected=active), key="rs_swarm")
    labels = inter.pair_labels()
    order = np.argsort(-np.abs(inter.fis[active]).mean(0), kind="stable")
    pair = synced_selectbox("Halo plot of the pair", [labels[p] for p in order], key="rs_pair_fis")
    idx, ref = _with_reference(active, best)
    sub = replace(inter, fis=inter.fis[idx], joint=inter.joint[idx], single=inter.single[idx])
    st.plotly_chart(rashfig.fis_halo_figure(sub, labels.index(pair), reference=ref), key="rs_halo")
    st.caption("FIS(i, j) = φ_ij − φ_i − φ_j, the extra loss from permuting i and j together (Li et al. 2024); "
               "≈ 0 when they act additively. Pairs among the most important features.")


def _tree_browser(view, active) -> None:
    trees = view.trees
    names = list(trees.feature_names)
    c = st.columns([2, 1, 1, 2, 2])
    acc = c[0].slider("Training accuracy", 0.0, 1.0, (0.0, 1.0), step=0.01, key="rs_tacc")
    depth = c[1].selectbox("Max depth", sorted(set(trees.depth.tolist()), reverse=True), key="rs_tdepth")
    leaves = c[2].selectbox("Max leaves", sorted(set(trees.n_leaves.tolist()), reverse=True), key="rs_tleaves")
    must = c[3].multiselect("Uses", names, key="rs_tuse")
    never = c[4].multiselect("Does not use", names, key="rs_tnouse")
    keep = rashfig.filter_trees(trees, accuracy=acc, max_depth=depth, max_leaves=leaves, must_use=must,
                             must_not_use=never)
    idx = np.intersect1d(active, keep)
    st.caption(f"{len(idx):,} trees pass the filters (of {len(active):,} shown above).")
    if not len(idx):
        return
    left, right = st.columns(2)
    left.plotly_chart(rashfig.tree_sunburst(trees, indices=idx), key="rs_sunburst")
    right.plotly_chart(rashfig.tree_set_scatter(trees), key="rs_tscatter")
    sort = synced_selectbox("Sort the list by", ["objective", "accuracy", "leaves", "depth", "features"],
                            key="rs_tsort")
    table = pd.DataFrame({"tree": idx, "objective": trees.objective[idx], "training accuracy": trees.accuracy[idx],
                          "leaves": trees.n_leaves[idx], "depth": trees.depth[idx],
                          "features": trees.features_used[idx].sum(1),
                          "features used": [", ".join(names[j] for j in np.flatnonzero(trees.features_used[t]))
                                            for t in idx]})
    if view.eval_accuracy is not None:
        table.insert(3, "held-out accuracy", [view.eval_accuracy[t] if t < len(view.eval_accuracy) else np.nan
                                             for t in idx])
    table = table.sort_values(sort, ascending=sort != "accuracy", kind="stable").head(500).reset_index(drop=True)
    event = st.dataframe(table, hide_index=True, key="rs_tlist", on_select="rerun", selection_mode="single-row",
                         height=300)
    rows = getattr(getattr(event, "selection", None), "rows", None) or [0]
    t = int(table["tree"].iloc[rows[0]])
    left, right = st.columns([3, 2])
    left.plotly_chart(rashfig.tree_diagram(trees, t), key="rs_tdiagram")
    with right:
        st.markdown(f"**Tree {t} as rules** (one per leaf)")
        st.code("\n".join(f"IF {' AND '.join(f'{f} = {v}' for f, v in conds) or 'always'} THEN {label}"
                          for conds, label in tree_rules(trees, t)), language=None, wrap_lines=True)
