"""Connectivity page tabs; every computation is a shared probe job."""

from __future__ import annotations

import streamlit as st

from engine.figures import connectivity as cfig
from engine.jobs.builtin_probes.connectivity import instability_steps

from .pickers import checkpoints_of, probe_result
from .reads import run_record
from .report_draft import show_figure
from .services import Services, cached_runs
from .state import synced_multiselect, synced_selectbox
from .text import literal
from .view_cache import shared_view

__all__ = ["instability_tab", "layerwise_tab", "matrix_tab", "merge_tab", "paths_tab", "singular_tab"]

KINDS = {"max_minus_linear": "max − linear interpolation of the ends (Frankle et al. 2020)",
         "max_minus_mean": "max − mean of the ends (Entezari et al. 2022)",
         "midpoint": "loss at α = ½ − mean of the ends"}


def _finals(svc: Services, runs: list[str]) -> list[str]:
    return [checkpoints_of(svc, r)["checkpoint_id"].iloc[-1] for r in runs]


def _need_pair(svc: Services, runs: list[str]) -> bool:
    if len(runs) != 2:
        st.info("Pick two runs (A and B) above.")
        return False
    archs = [run_record(svc, r)["config"]["arch"] for r in runs]
    if archs[0] != archs[1]:
        a, b = (literal(arch, limit=200) for arch in archs)
        st.warning(f"A and B have different architectures ({a} vs {b}); paths, alignment and "
                   "merging need the same architecture. Pick runs that differ only in seed or optimiser settings.")
        return False
    return True


def paths_tab(svc: Services, runs: list[str]) -> None:
    if not _need_pair(svc, runs):
        return
    c = st.columns(3)
    methods = synced_multiselect("Alignment", ["none", "weight", "activation"], key="lmc_methods",
                                 default=["none", "weight"], container=c[0],
                                 format_func={"none": "naive", "weight": "weight matching",
                                              "activation": "activation matching"}.get)
    bn = synced_selectbox("BatchNorm", ["running", "reset"], key="lmc_bn", container=c[1],
                          format_func={"running": "running statistics", "reset": "reset at every α (REPAIR)"}.get)
    kind = synced_selectbox("Barrier", list(KINDS), key="lmc_kind", container=c[2], format_func=KINDS.get)
    if not methods:
        return
    status = probe_result(svc, "connectivity.paths", {"methods": methods, "bn": [bn]}, _finals(svc, runs),
                          key="paths", label="Align and interpolate")
    if status is None:
        return
    fig = shared_view(("conn.paths", status.key, kind), lambda: cfig.interpolation_figure(
        list(status.typed().curves), kind=kind))
    show_figure(fig, key="paths_fig", title="Linear mode connectivity A → B",
                params={"methods": methods, "bn": bn, "kind": kind}, checkpoint_ids=_finals(svc, runs), run_ids=runs,
                probe_keys=[status.key])
    checks = status.typed().check_max_diff
    if checks:
        st.caption("Function-preservation self-check passed before any barrier was drawn: largest output change "
                   + ", ".join(f"{m}: {v:.1e}" for m, v in checks.items()) + ".")


def layerwise_tab(svc: Services, runs: list[str]) -> None:
    if not _need_pair(svc, runs):
        return
    c = st.columns(2)
    align = synced_selectbox("Alignment", ["weight", "none", "activation"], key="lw_align", container=c[0])
    cumulative = c[1].toggle("cumulative (layers up to each one)", key="lw_cum")
    status = probe_result(svc, "connectivity.layerwise", {"align": align, "cumulative": cumulative},
                          _finals(svc, runs), key="layerwise", label="Compute layer-wise barriers")
    if status is None:
        return
    fig = shared_view(("conn.layerwise", status.key), lambda: cfig.layerwise_figure(
        status.typed()))  # LayerwiseBarriers
    show_figure(fig, key="layerwise_fig", title="Layer-wise barriers",
                params={"align": align, "cumulative": cumulative}, checkpoint_ids=_finals(svc, runs), run_ids=runs,
                probe_keys=[status.key])


def matrix_tab(svc: Services, zoo_id: str) -> None:
    runs = cached_runs(svc, zoo_id)
    runs = runs[runs["status"] == "done"]
    hp = [h for h in runs.columns if h.startswith("hp_") and h != "hp_seed" and runs[h].nunique() > 1]
    group = runs
    if hp:
        cfg = synced_selectbox("Configuration", sorted(runs[hp].drop_duplicates().map(str).agg(" ".join, axis=1)),
                               key="mat_cfg")
        group = runs[runs[hp].map(str).agg(" ".join, axis=1) == cfg]
    group = group.head(12)
    if len(group) < 2:
        st.info("A barrier matrix needs at least two finished runs of one configuration (e.g. several seeds).")
        return
    align = synced_selectbox("Alignment", ["weight", "none"], key="mat_align")
    status = probe_result(svc, "connectivity.matrix", {"align": align}, _finals(svc, group["run_id"].tolist()),
                          key="matrix", label=f"Barriers between all {len(group)} runs")
    if status is None:
        return
    fig = shared_view(("conn.matrix", status.key), lambda: cfig.barrier_matrix_figure(
        status.typed()))  # BarrierMatrix
    show_figure(fig, key="matrix_fig", title="Barrier matrix", params={"align": align},
                run_ids=group["run_id"].tolist(), probe_keys=[status.key])


def merge_tab(svc: Services, runs: list[str]) -> None:
    if not _need_pair(svc, runs):
        return
    c = st.columns(3)
    method = synced_selectbox("Merge", ["average", "fisher"], key="mg_method", container=c[0])
    align = synced_selectbox("Alignment", ["weight", "none", "activation"], key="mg_align", container=c[1])
    bn = synced_selectbox("BatchNorm", ["reset", "average"], key="mg_bn", container=c[2])
    status = probe_result(svc, "connectivity.merge", {"method": method, "align": align, "bn": bn},
                          _finals(svc, runs), key="merge", label="Merge A and B")
    if status is None:
        return
    fig = shared_view(("conn.merge", status.key), lambda: cfig.merge_figure(
        [status.typed()]))  # MergeResult
    show_figure(fig, key="merge_fig", title=f"Merging ({method}, {align} alignment)",
                params={"method": method, "align": align, "bn": bn}, run_ids=runs, probe_keys=[status.key])


def instability_tab(svc: Services, runs: list[str]) -> None:
    """Frankle et al.'s instability analysis of run A: re-train it, fork at step k, barrier between the children."""
    if not runs:
        st.info("Pick a run above (A): its training is replayed and forked at several steps.")
        return
    run = run_record(svc, runs[0])
    if run.get("origin") in ("logged", "imported"):  # ProbeService refuses it too (ProbeKind.replays_training)
        st.info(f"Run **{literal(run.get('name') or runs[0])}** was {run['origin']} rather than trained here: its "
                "optimiser settings are placeholders, so its training cannot be replayed and forked. Pick a run "
                "trained by Zooscope as A.")
        return
    c = st.columns(3)
    n_steps = int(synced_selectbox("Spawn steps", [4, 6, 8, 12], key="ins_n", container=c[0], default=6))
    metric = synced_selectbox("Barrier of", ["error", "loss"], key="ins_metric", container=c[1])
    log_x = c[2].toggle("log step axis", key="ins_log", value=True)
    total = int(run["config"]["steps"])
    st.caption(f"Forks run **{literal(run.get('name') or runs[0])}** at steps "
               f"{instability_steps(total, n_steps)} of {total}; each fork trains two children to step {total} with "
               "data-order seeds 1 and 2 (same initialisation, optimiser state copied) and reports the barrier between "
               f"them: {KINDS['max_minus_mean'].split(' (')[0]} ({metric}, test split).")
    final = _finals(svc, runs[:1])
    status = probe_result(svc, "connectivity.instability", {"n_steps": n_steps, "metric": metric}, final,
                          key="instability", label="Replay, spawn and measure")
    if status is None:
        return
    fig = shared_view(("conn.instability", status.key, log_x), lambda: cfig.instability_figure(
        status.typed(), log_x=log_x))  # Instability
    show_figure(fig, key="instability_fig",
                title="Instability against the spawn step", params={"n_steps": n_steps, "metric": metric},
                checkpoint_ids=final, run_ids=runs[:1], probe_keys=[status.key])


def singular_tab(svc: Services, runs: list[str]) -> None:
    """Does alignment line up the singular vectors of A and B? Per layer, before and after (Ito et al. 2025)."""
    if not _need_pair(svc, runs):
        return
    c = st.columns(2)
    align = synced_selectbox("Alignment", ["weight", "activation"], key="sv_align", container=c[0])
    side = synced_selectbox("Singular vectors", ["left", "right"], key="sv_side", container=c[1],
                            format_func={"left": "left (output side, u_i)", "right": "right (input side, v_i)"}.get)
    finals = _finals(svc, runs)
    status = probe_result(svc, "connectivity.singular", {"align": align}, finals, key="singular",
                          label="Align and compare singular vectors")
    if status is None:
        return
    result = status.typed()  # SingularAlignment, decoded once per process
    params = {"align": align, "side": side}
    fig = shared_view(("conn.singular_fig", status.key, side),
                      lambda: cfig.singular_alignment_figure(result, side=side))
    show_figure(fig, key="singular_fig",
                title="Singular-vector alignment", params=params, checkpoint_ids=finals, run_ids=runs,
                probe_keys=[status.key])
    layer = synced_selectbox("Layer", list(result.layers), key="sv_layer")
    fig = shared_view(("conn.singular_layer", status.key, layer), lambda: cfig.singular_cosine_figure(result, layer))
    show_figure(fig, key="singular_layer_fig",
                title=f"Singular-vector agreement of {layer}", params={**params, "layer": layer},
                checkpoint_ids=finals, run_ids=runs, probe_keys=[status.key])
