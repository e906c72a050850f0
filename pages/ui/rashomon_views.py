"""Rashomon page: three sources of models (a zoo, a sampled model class, sparse trees) become one
:class:`RashomonView`; the panels filter it by ε inline and draw the set, its multiplicity and its
explanations for the members (or for the models selected in the scatter)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import streamlit as st

from engine.figures import rashomon as rashfig
from engine.jobs.builtin_probes.convert import unpack
from engine.probes.rashomon import (
    ImportanceCloud,
    InteractionCloud,
    TreeRashomonSet,
    multiplicity_curve,
    pattern_rashomon_ratio,
    predictive_multiplicity,
    rashomon_curve,
    rashomon_set,
    tree_rules,
)

from .pickers import probe_result
from .rashomon_rid_views import rid_panel
from .services import Services
from .state import set_query, synced_selectbox
from .text import literal

__all__ = ["RashomonView", "SOURCES", "population_ids", "population_source", "rashomon_panels", "sample_source",
           "tree_source", "zoo_checkpoints"]

SOURCES = {"zoo": "a zoo's trained models", "sample": "a model class, sampled (tabular data)",
           "trees": "sparse decision trees (TreeFARMS)"}
MODES = {"relative": "relative ε: loss ≤ (1 + ε) × best", "absolute": "absolute ε: loss ≤ best + ε"}
SAMPLE_DATA = ["breast_cancer", "wine", "rid_chen", "compas", "monk1", "monk2", "monk3", "car_evaluation", "bar7"]
TREE_DATA = ["monk1", "monk2", "monk3", "compas", "car_evaluation", "bar7"]
PATTERN_LIMIT = 5_000_000  # model × sample predictions above which the pattern count is skipped


@dataclass(frozen=True)
class RashomonView:
    """What the panels need, whatever the source: one loss per model per metric, predictions, clouds."""

    source: str
    metrics: dict[str, np.ndarray]  # label (says the split) -> loss per model (M,)
    labels: list[str] | None = None  # hover name per model
    preds: np.ndarray | None = None  # hard labels (M', N) of the first M' models (M' = M except for trees)
    probs: np.ndarray | None = None  # probabilities (M, N, C) when known
    x: np.ndarray | None = None  # the N samples' features (N, D)
    feature_names: list[str] = field(default_factory=list)
    importance: ImportanceCloud | None = None
    interactions: InteractionCloud | None = None
    trees: TreeRashomonSet | None = None
    eval_accuracy: np.ndarray | None = None  # trees: accuracy on the evaluation rows
    cap: float | None = None  # largest loss the stored set reaches (a sampled set, a tree set)
    notes: list[str] = field(default_factory=list)
    request: tuple | None = None  # (probe kind, params, checkpoint ids) the view was built from (the RID tab)


def _clouds(s: dict, a: dict) -> tuple[ImportanceCloud | None, InteractionCloud | None]:
    if "vic.mean" not in a:
        return None, None
    inter = unpack(InteractionCloud, s, a, "fis.") if len(a.get("fis.pairs", ())) else None
    return unpack(ImportanceCloud, s, a, "vic."), inter


def _view(source: str, result, metrics: dict[str, np.ndarray], **kw) -> RashomonView:
    s, a = result.summary, result.arrays
    vic, fis = _clouds(s, a)
    probs = a.get("probs")
    preds = probs.argmax(-1) if probs is not None else a.get("pred")
    return RashomonView(source, metrics, probs=probs, preds=preds, x=a.get("x"), feature_names=s["feature_names"],
                        importance=vic, interactions=fis, notes=list(s.get("warnings", [])), **kw)


def _finite(view: RashomonView) -> RashomonView:
    """Leave out models with a non-finite loss (diverged runs), saying how many."""
    ok = np.logical_and.reduce([np.isfinite(v) for v in view.metrics.values()])
    if ok.all():
        return view
    keep = np.flatnonzero(ok)
    sub = lambda v: None if v is None else v[keep]  # noqa: E731
    vic, fis = view.importance, view.interactions
    if vic is not None:
        m = vic.mean[keep]
        vic = unpack(ImportanceCloud, {"feature_names": vic.feature_names, "metric": vic.metric},
                     {"importances": vic.importances[keep], "mean": m, "baseline": vic.baseline[keep],
                      "mcr_min": m.min(0), "mcr_max": m.max(0)})
    if fis is not None:
        fis = InteractionCloud(pairs=fis.pairs, fis=fis.fis[keep], joint=fis.joint[keep], single=fis.single[keep],
                               feature_names=fis.feature_names, metric=fis.metric)
    return RashomonView(source=view.source, metrics={k: v[keep] for k, v in view.metrics.items()},
                        labels=[view.labels[i] for i in keep] if view.labels else None, preds=sub(view.preds),
                        probs=sub(view.probs), x=view.x, feature_names=view.feature_names, importance=vic,
                        interactions=fis, request=view.request, notes=view.notes + [
                            f"{int((~ok).sum())} models with a non-finite loss (diverged) are left out"])


# -- sources ----------------------------------------------------------------------------------------------

def zoo_checkpoints(store, zoo_id: str) -> pd.DataFrame:
    """Stored checkpoints (with weights) of the zoo's finished runs, with run name and data set."""
    runs = store.runs_table(zoo_id)
    runs = runs[runs["status"] == "done"][["run_id", "name"]]
    configs = store.list_runs(zoo_id)[["run_id", "config_json"]]
    configs["dataset"] = [json.loads(c or "{}").get("dataset", {}).get("name", "?") for c in configs["config_json"]]
    ck = store.list_checkpoints(zoo_id=zoo_id)
    ck = ck[ck["artifact_sha"].notna()][["checkpoint_id", "run_id", "step"]]
    return (ck.merge(runs, on="run_id").merge(configs[["run_id", "dataset"]], on="run_id")
            .sort_values(["name", "run_id", "step"]).reset_index(drop=True))


@st.cache_data(show_spinner=False, max_entries=32)
def _zoo_checkpoints(_svc: Services, zoo_id: str, generation: int) -> pd.DataFrame:
    return zoo_checkpoints(_svc.store, zoo_id)


def population_ids(checkpoints: pd.DataFrame, which: str) -> pd.DataFrame:
    """The checkpoints a zoo's Rashomon set is built from: each run's last one, or all of them."""
    if which == "final":
        return checkpoints.groupby("run_id", sort=False).tail(1).reset_index(drop=True)
    return checkpoints


def population_source(svc: Services, zoo_id: str) -> RashomonView | None:
    ckpts = _zoo_checkpoints(svc, zoo_id, svc.generation)
    datasets = sorted(ckpts["dataset"].unique())
    c = st.columns(3 if len(datasets) > 1 else 2)
    if len(datasets) > 1:
        ckpts = ckpts[ckpts["dataset"] == synced_selectbox("Data set", datasets, key="rs_zds", container=c[-3])]
    which = synced_selectbox("Checkpoints", ["final", "all"], key="rs_ck", container=c[-2],
                             format_func={"final": "each run's final one", "all": "every stored one"}.get)
    split = synced_selectbox("Held-out split", ["test", "train"], key="rs_split", container=c[-1])
    chosen = population_ids(ckpts, which)
    if len(chosen) < 2:
        st.info("A Rashomon set compares models: this zoo needs at least two finished runs with stored "
                "weights. Results appear here as runs finish; or pick sampled models or sparse trees above.")
        return None
    status = probe_result(svc, "rashomon.population", {"split": split}, chosen["checkpoint_id"].tolist(),
                          key="rs_pop", label=f"Evaluate {len(chosen)} models on the {split} split")
    if status is None:
        return None
    s, a = status.result.summary, status.result.arrays
    metrics = {f"{split} loss": a["loss"]} | ({f"{split} error (1 − accuracy)": a["error"]} if "error" in a else {})
    labels = [f"{n} · step {k}" for n, k in zip(s["labels"], s["steps"])] if which == "all" else s["labels"]
    return _finite(_view("zoo", status.result, metrics, labels=labels,
                         request=("rashomon.population", {"split": split}, tuple(chosen["checkpoint_id"]))))


def sample_source(svc: Services) -> RashomonView | None:
    c = st.columns(5)
    dataset = synced_selectbox("Data set", SAMPLE_DATA, key="rs_data", container=c[0])
    model = synced_selectbox("Model class", ["logistic", "mlp"], key="rs_model", container=c[1],
                             format_func={"logistic": "logistic regression", "mlp": "MLP, 8 tanh units"}.get)
    eps = synced_selectbox("Sample up to relative ε", [0.01, 0.02, 0.05, 0.1, 0.2], key="rs_eps_s",
                           default=0.05, container=c[2])
    n = synced_selectbox("Candidates", [500, 1000, 2000, 5000], key="rs_n", default=1000, container=c[3])
    l2 = synced_selectbox("L2 penalty", [1e-4, 1e-3, 1e-2], key="rs_l2", default=1e-3, container=c[4])
    params = {"dataset": dataset, "model": model, "epsilon": eps, "n_samples": n, "l2": l2}
    status = probe_result(svc, "rashomon.sample", params, [], key="rs_sample",
                          label=f"Sample {n} candidates around the optimum")
    if status is None:
        return None
    s, a = status.result.summary, status.result.arrays
    view = _view("sample", status.result, {"training objective (CE + L2)": a["objective"]},
                 labels=["optimum"] + [f"sample {i}" for i in range(1, len(a["objective"]))],
                 cap=s["sample.threshold"], request=("rashomon.sample", params, ()))
    view.notes.append(f"{len(a['objective']) - 1} of {n} candidates drawn uniformly in the Hessian ellipsoid were "
                      f"exact members (acceptance rate {s['sample.acceptance_rate']:.1%}); the optimum is model 0. "
                      f"Multiplicity and importances are measured on the {s['n_eval']} test samples. The objective "
                      "is cross-entropy + L2 penalty on the train split, the loss the set was sampled on; uniform "
                      "samples of a high-dimensional ellipsoid lie near its boundary, so the count rises steeply "
                      "near the largest ε.")
    return view


def tree_source(svc: Services) -> RashomonView | None:
    c = st.columns(5)
    dataset = synced_selectbox("Data set", TREE_DATA, key="rs_tdata", container=c[0])
    reg = synced_selectbox("Regularization λ", [0.005, 0.01, 0.02, 0.03, 0.05, 0.1], key="rs_reg", default=0.03,
                           container=c[1])
    mult = synced_selectbox("Rashomon multiplier (relative ε)", [0.0, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2],
                            key="rs_mult", default=0.1, container=c[2])
    depth = synced_selectbox("Depth budget", ["none", 2, 3, 4, 5, 6], key="rs_depth", container=c[3],
                             format_func=lambda d: "no limit" if d == "none" else f"{d} (root = 1)")
    fit_on = synced_selectbox("Fit on", ["train", "all"], key="rs_fit", container=c[4],
                              format_func={"train": "train split", "all": "all rows (as the papers)"}.get)
    params = {"dataset": dataset, "regularization": reg, "rashomon_multiplier": mult, "fit_on": fit_on,
              "depth_budget": None if depth == "none" else depth}
    status = probe_result(svc, "rashomon.trees", params, [], key="rs_trees",
                          label=f"Enumerate the tree Rashomon set of {dataset} (TreeFARMS; can take minutes)")
    if status is None:
        return None
    s, a = status.result.summary, status.result.arrays
    trees = unpack(TreeRashomonSet, s, a, "trees.")
    view = _view("trees", status.result, {"training objective (error + λ·leaves)": trees.objective},
                 labels=[f"tree {i}" for i in range(trees.size)], trees=trees, eval_accuracy=a["eval_accuracy"],
                 cap=trees.bound, request=("rashomon.trees", params, ()))
    view.notes.append(f"{trees.size:,} trees within {trees.label}; treefarms reported {trees.n_reported:,}, "
                      f"{trees.n_dropped:,} dropped after recomputing their objective from their rules.")
    if s["n_predicted"] < trees.size:
        view.notes.append(f"Multiplicity uses the {s['n_predicted']:,} best trees (predictions stored for those).")
    return view


# -- ε, membership and the linked selection -------------------------------------------------------------

def _eps_range(losses: np.ndarray, mode: str, cap: float | None) -> tuple[float, float]:
    """(slider maximum, step): relative up to top/best − 1, absolute up to top − best.

    ``top`` is the worst model (rounded up to a step, so the range ends with every model in) or,
    for a sampled or enumerated set, the bound it was built with (rounded down: past it the
    stored models would under-count the set).
    """
    best, top = float(losses.min()), float(cap if cap is not None else losses.max())
    hi = max((top / best - 1.0) if mode == "relative" and best > 0 else (top - best), 1e-3)
    step = 10.0 ** math.floor(math.log10(hi / 200))
    steps = math.floor(hi / step + 1e-6) if cap is not None else math.ceil(hi / step - 1e-6)
    return max(step, steps * step), step


def _eps_slider(losses: np.ndarray, mode: str, cap: float | None) -> float:
    """ε slider kept in ``?eps=``; its range follows the metric and convention.

    Starts at the whole stored set for a sampled or enumerated set (``cap``), else at 5% relative
    (a quarter of the range absolute).
    """
    hi, step = _eps_range(losses, mode, cap)
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
    hi, _ = _eps_range(losses, mode, view.cap)
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
    sub = ImportanceCloud(importances=cloud.importances[idx], mean=cloud.mean[idx], baseline=cloud.baseline[idx],
                          mcr_min=cloud.mcr_min, mcr_max=cloud.mcr_max, feature_names=cloud.feature_names,
                          metric=cloud.metric)
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
    sub = InteractionCloud(pairs=inter.pairs, fis=inter.fis[idx], joint=inter.joint[idx], single=inter.single[idx],
                           feature_names=inter.feature_names, metric=inter.metric)
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
