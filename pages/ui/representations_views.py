"""Representations page tabs. Activations are one stored probe per set of checkpoints; the
cheap measures on them (CKA grids, collapse, dimensions) and their figures are computed once
per process under the probe's key (:func:`~pages.ui.view_cache.shared_view`), UMAP runs as a job."""

from __future__ import annotations

import numpy as np
import streamlit as st

from engine.figures import representations as repfig
from engine.jobs.builtin_probes.convert import unpack
from engine.jobs.builtin_probes.representations import split_activations
from engine.probes.representations import (
    METRICS,
    AlignedProjection,
    aligned_projection,
    layer_dimensions,
    neural_collapse_over_training,
    neuron_matching,
    similarity_grid,
    similarity_over_training,
)
from engine.probes.representations.topological import DEFAULT_LOWER, DEFAULT_UPPER

from .pickers import checkpoints_of, probe_result
from .report_draft import show_figure
from .services import Services, cached_runs
from .state import synced_range, synced_selectbox
from .view_cache import shared_view

__all__ = ["collapse_tab", "dimension_tab", "model_vs_model_tab", "projection_tab", "training_tab"]

_METRIC_NAMES = {"linear_cka": "linear CKA", "debiased_cka": "debiased CKA", "rbf_cka": "RBF CKA",
                 "procrustes": "Procrustes distance", "svcca": "SVCCA", "pwcca": "PWCCA", "rsa": "RSA",
                 "trsa": "tRSA (topological RSA)"}


def _last_checkpoint(svc: Services, run_id: str) -> str:
    return checkpoints_of(svc, run_id)["checkpoint_id"].iloc[-1]


def _activations(svc: Services, ids: list[str], key: str, label: str):
    """``(activations per checkpoint, the stored result, its probe key)``, or Nones while not computed."""
    status = probe_result(svc, "representations.activations", {}, ids, key=key, label=label, auto=True)
    if status is None:
        return None, None, None
    return split_activations(status.result.summary, status.result.arrays), status.result, status.key


def _grid_view(acts_a, acts_b, metric: str, title: str, params: tuple = (), **heatmap):
    kw = dict(params)
    grid = (similarity_grid(acts_a, acts_b, metric, **kw) if acts_b is not None
            else similarity_over_training(acts_a, metric, **kw))
    return grid, repfig.similarity_heatmap(grid, title=title, **heatmap)


def _measure_params(metric: str, key: str) -> tuple:
    """The measure's own settings as ``((name, value), ...)``: tRSA's two quantile bounds (``?<key>=lo,hi``)."""
    if metric != "trsa":
        return ()
    lower, upper = synced_range(
        "tRSA bounds (quantiles of each layer's distances)", 0.0, 1.0, key=key, step=0.05,
        default=(DEFAULT_LOWER, DEFAULT_UPPER),
        help="Geo-topological transform (Lin & Kriegeskorte 2024): distances below the lower quantile count as 0 "
             "(connected), above the upper as 1 (equally far), linear between. (0, 1) is plain RSA; "
             "equal bounds keep only the graph of close pairs.")
    return ("lower", lower), ("upper", upper)


def model_vs_model_tab(svc: Services, runs: list[str]) -> None:
    if len(runs) != 2:
        st.info("Pick two runs (A and B) above to compare their layers.")
        return
    metric = synced_selectbox("Measure", list(METRICS), key="rep_metric", format_func=_METRIC_NAMES.get)
    params = _measure_params(metric, "rep_trsa")
    acts, _, probe = _activations(svc, [_last_checkpoint(svc, r) for r in runs], "acts_ab", "Capture activations")
    if acts is None:
        return
    names = cached_runs(svc, None, svc.generation).set_index("run_id")["name"]
    title = f"{_METRIC_NAMES[metric]}: A = {names.get(runs[0], runs[0])}, B = {names.get(runs[1], runs[1])}"
    grid, fig = shared_view(("rep.grid_ab", probe, metric, params, title),
                            lambda: _grid_view(acts[0], acts[1], metric, title, params))
    show_figure(fig, key="grid_ab", title=title, params={"metric": metric, **dict(params)}, run_ids=runs)
    best = grid.best_match()
    share = float(np.mean(best == np.arange(len(best)))) if grid.values.shape[0] == grid.values.shape[1] else np.nan
    st.caption(f"{'Larger' if grid.larger_is_similar else 'Smaller'} means more similar. The best-matching layer "
               f"of B is the corresponding layer for {share:.0%} of A's layers (Kornblith et al. 2019 find this "
               "for networks trained from different seeds).")


def training_tab(svc: Services, run_id: str) -> None:
    ids = checkpoints_of(svc, run_id)["checkpoint_id"].tolist()
    metric = synced_selectbox("Measure", list(METRICS), key="rep_metric_t", format_func=_METRIC_NAMES.get)
    params = _measure_params(metric, "rep_trsa_t")
    acts, res, probe = _activations(svc, ids, "acts_run", f"Capture activations at {len(ids)} checkpoints")
    if acts is None:
        return
    labelled = {f"step {s}": a for s, a in zip(res.summary["steps"], acts)}
    _, fig = shared_view(("rep.grid_t", probe, metric, params), lambda: _grid_view(
        labelled, None, metric, "Each layer against itself at the final checkpoint", params, mark_best=False))
    show_figure(fig, key="grid_t", title="Similarity through training", params={"metric": metric, **dict(params)},
                checkpoint_ids=ids, run_ids=[run_id])


def projection_tab(svc: Services, run_id: str, runs: list[str]) -> None:
    ids = checkpoints_of(svc, run_id)["checkpoint_id"].tolist()
    acts, res, probe = _activations(svc, ids, "acts_run", "Capture activations")
    if acts is None:
        return
    layers = res.summary["layers"]
    if "proj_layer" not in st.session_state and "proj_layer" not in st.query_params:
        st.session_state["proj_layer"] = layers[max(0, len(layers) - 2)]  # penultimate: the learned features
    layer = synced_selectbox("Layer", layers, key="proj_layer")
    targets = res.arrays.get("targets")
    method = synced_selectbox("Method", ["pca", "umap"], key="proj_method",
                              format_func={"pca": "PCA (instant)", "umap": "UMAP (background job)"}.get)
    status = None
    if method == "umap":
        status = probe_result(svc, "representations.projection", {"layer": layer}, ids, key="umap", auto=True)
        if status is None:
            st.caption("Showing PCA until UMAP is ready.")
    if status is None:
        source = probe
        steps = [f"step {s}" for s in res.summary["steps"]]
        proj = shared_view(("rep.pca", probe, layer), lambda: aligned_projection(
            [a[layer] for a in acts], "pca", labels=targets, checkpoint_labels=steps))
    else:
        source = status.key
        proj = unpack(AlignedProjection, status.result.summary, status.result.arrays)
        targets = status.result.arrays.get("targets", targets)
    labels = targets[proj.indices] if targets is not None and len(targets) > max(proj.indices, default=0) else None
    fig = shared_view(("rep.proj_fig", source, layer),
                      lambda: repfig.projection_figure(proj, labels, title=f"{layer} through training"))
    show_figure(fig, key="proj_fig", title=f"{proj.method.upper()} of {layer} through training",
                params={"layer": layer, "method": method}, checkpoint_ids=ids, run_ids=[run_id])
    if proj.subsampled:
        st.caption(f"{len(proj.indices)} of {proj.n_total} samples shown (stratified by class; cap {proj.cap}).")


def collapse_tab(svc: Services, run_id: str, runs: list[str]) -> None:
    ids = checkpoints_of(svc, run_id)["checkpoint_id"].tolist()
    acts, res, probe = _activations(svc, ids, "acts_run", "Capture activations")
    if acts is None:
        return
    if "targets" not in res.arrays or res.arrays["targets"].dtype.kind not in "iu":
        st.info("Neural collapse needs class labels (a classification data set).")
        return
    penultimate = res.summary["layers"][-2] if len(res.summary["layers"]) > 1 else res.summary["layers"][-1]
    features = [a[penultimate] for a in acts]
    fig = shared_view(("rep.collapse", probe, penultimate), lambda: repfig.neural_collapse_figure(
        neural_collapse_over_training(features, res.arrays["targets"], steps=res.summary["steps"]),
        title=f"Neural collapse of {penultimate} (Papyan et al. 2020)"))
    st.plotly_chart(fig, key="nc_fig")


def dimension_tab(svc: Services, run_id: str, runs: list[str]) -> None:
    acts, _, probe = _activations(svc, [_last_checkpoint(svc, run_id)], "acts_last", "Capture activations")
    if acts is None:
        return
    st.plotly_chart(shared_view(("rep.dimension", probe), lambda: repfig.dimension_figure(layer_dimensions(acts[0]))),
                    key="dim_fig")
    others = [r for r in runs if r != run_id]
    if not others:
        st.info("Pick a second run in *Model vs model* to match its neurons with this run's.")
        return
    pair, _, probe = _activations(svc, [_last_checkpoint(svc, run_id), _last_checkpoint(svc, others[0])],
                                  "acts_pair", "Capture activations of both runs")
    if pair is None:
        return
    st.plotly_chart(shared_view(("rep.neurons", probe), lambda: _neuron_matching_figure(pair)), key="nm_fig")


def _neuron_matching_figure(pair):
    shared = [layer for layer in pair[0] if layer in pair[1] and pair[0][layer].shape == pair[1][layer].shape]
    matchings = {layer: neuron_matching(pair[0][layer], pair[1][layer]) for layer in shared[:-1] or shared}
    return repfig.neuron_matching_figure(matchings)
