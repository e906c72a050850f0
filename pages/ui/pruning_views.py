"""Phases page, Pruning tab: the three-regime model of pruning (Zhou et al. 2023) over a zoo.

Every cell's seeds are magnitude-pruned to several densities by the ``prune.cell`` probe (one
background job per cell, shared like every probe); the tab shows the pruned networks' metrics
over the dense training's temperature x the pruned density (the load), how the test error moves
with temperature at each density -- the paper's sharp transition -- and the regime of every cell.
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from engine.auth import PermissionDenied
from engine.figures import phases as pfig
from engine.jobs import phase_cells_status, probe_phase_cells
from engine.jobs.builtin_probes.phases import PruneCellParams
from engine.probes.phases import PRUNING_REGIMES, classify_regimes, pruned_cell_table, pruned_rows, temperature_effect

from .report_draft import show_figure
from .services import Services, cached_runs, current_user, may
from .state import synced_multiselect, synced_selectbox
from .text import literal
from .view_cache import frame_key, shared_view

__all__ = ["pruning_section"]

PROBE = "prune.cell"
DENSITIES = (0.01, 0.02, 0.03, 0.05, 0.06, 0.1, 0.12, 0.2, 0.25, 0.5, 0.75, 1.0)
METRICS = {"test_error": "test error", "train_error": "training error", "hessian_top": "top Hessian eigenvalue",
           "barrier_aligned": "barrier between pruned seeds, weight matching",
           "barrier_naive": "barrier between pruned seeds, naive", "cka_output": "CKA of the seeds' outputs",
           "cka_mean": "CKA between seeds, mean over hidden layers"}


def prune_params() -> dict:
    """Densities, scope and fine-tuning steps, kept in the URL (``?pdens=``, ``?pscope=``, ``?pft=``)."""
    c = st.columns([3, 1, 1])
    densities = synced_multiselect("Densities (fraction of weights kept)", DENSITIES, key="pr_dens", param="pdens",
                                   default=list(PruneCellParams().densities), container=c[0])
    scope = c[1].selectbox("Scope", ["global", "layerwise"], key="pr_scope",
                           index=int(st.query_params.get("pscope") == "layerwise"))
    steps = c[2].number_input("Fine-tuning steps", 0, 100_000, key="pr_ft", step=100,
                              value=int(st.query_params.get("pft", 0) or 0),
                              help="With each run's own optimiser after pruning; pruned weights stay zero")
    st.query_params.update(pscope=scope, pft=str(int(steps)))
    return PruneCellParams(densities=densities or PruneCellParams().densities, scope=scope,
                           fine_tune_steps=int(steps)).model_dump(mode="json")


@st.cache_data(show_spinner=False, max_entries=32)
def _status(_svc: Services, zoo_id: str, params_json: str, generation: int) -> list:
    return phase_cells_status(_svc.dispatcher, zoo_id, PROBE, json.loads(params_json))


def _panel(svc: Services, zoo_id: str, params: dict) -> list:
    requests = _status(svc, zoo_id, json.dumps(params, sort_keys=True), svc.generation)
    states = [r.status.state for r in requests]
    done, busy = states.count("done"), states.count("running") + states.count("queued")
    st.caption(f"{len(requests)} cells: {done} pruned and probed, {busy} in progress, {states.count('failed')} failed. "
               "Each run's final checkpoint is pruned to every density and measured as on the Phase diagram tab.")
    if done < len(requests) and may("launch") and st.button(
            "Prune and probe this zoo", key="pr_go", type="primary",
            help="One background job per cell: prune, fine-tune if asked, then evaluation, Hessian, barriers, CKA"):
        try:
            probe_phase_cells(svc.dispatcher, zoo_id, PROBE, params, owner=current_user())
        except (PermissionDenied, ValueError) as exc:  # ValueError: a checkpoint without stored weights
            st.error(literal(exc))
        else:
            st.rerun()
    if busy:
        _progress(svc, zoo_id, params)
    return [r for r in requests if r.status.state == "done"]


@st.fragment(run_every=2.0)
def _progress(svc: Services, zoo_id: str, params: dict) -> None:
    requests = phase_cells_status(svc.dispatcher, zoo_id, PROBE, params)
    if not any(r.status.state in ("queued", "running") for r in requests):
        st.rerun(scope="app")
    frac = sum(1.0 if r.status.state == "done" else r.status.progress for r in requests) / max(len(requests), 1)
    st.progress(frac, text="pruning and probing in background workers; this updates by itself")


def _runs(svc: Services, zoo_id: str, done: list) -> pd.DataFrame:
    """One row per (run, density): the runs table's hyperparameters and the pruned network's values."""
    results = [r.status.typed() for r in done]  # PruneCellResult
    rows = pd.concat([pruned_rows(res.run_ids, res.densities, res.values) for res in results], ignore_index=True)
    runs = cached_runs(svc, zoo_id)
    runs = runs[[c for c in runs.columns if not c.startswith("probe_")]].merge(rows, on="run_id", how="inner")
    return runs


def _temperature(sweep: dict) -> tuple[str, dict]:
    swept = [k for k in (sweep.get("grid") or {}) if k != "seed"]
    options = swept + (["lr/batch_size"] if "lr" in swept else [])
    if not options:
        return "", {}
    default = (sweep.get("phases") or {}).get("temperature")
    t = synced_selectbox("Temperature axis (the dense training)", options, key="pr_temp", param="ptemp",
                         default=default if default in options else options[-1])
    base = sweep.get("base") or {}
    constants = {"batch_size": base.get("batch_size"), "lr": (base.get("optim") or {}).get("lr")}
    return t, {k: v for k, v in constants.items() if v is not None}


def _regimes(cells: pd.DataFrame, t: str, ids: list[str]) -> None:
    pruned = cells[cells["load"] < 1.0].reset_index(drop=True)
    if pruned.empty:
        st.info("Pick at least one density below 1 to see regimes.")
        return
    c = st.columns(3)
    bm = c[0].selectbox("Connectivity", ["barrier_aligned", "barrier_naive"], key="pr_bm", format_func=METRICS.get)
    sm = c[1].selectbox("Similarity", ["cka_output", "cka_mean"], key="pr_sm", format_func=METRICS.get)
    d = classify_regimes(pruned, barrier_metric=bm, similarity_metric=sm).attrs
    bcut = c[2].number_input(f"Regime I above (median {d['barrier_cut']:.4g})", key=f"pr_bcut_{bm}", format="%.4g",
                             value=float(d["barrier_cut"]) if d["barrier_cut"] == d["barrier_cut"] else 0.0)
    scut = c[2].number_input(f"II-B at or above (median {d['similarity_cut']:.4g})", key=f"pr_scut_{sm}",
                             format="%.4g",
                             value=float(d["similarity_cut"]) if d["similarity_cut"] == d["similarity_cut"] else 0.0)
    classified = classify_regimes(pruned, barrier_cut=bcut, similarity_cut=scut, barrier_metric=bm,
                                  similarity_metric=sm)
    rule = f"I: {bm} > {bcut:.4g} · II-B: {sm} ≥ {scut:.4g} · II-A: otherwise"
    fig = shared_view(("pruning.regimes", frame_key(classified), t, rule),
                      lambda: pfig.regime_map(classified, temperature=t, load="density", rule_text=rule))
    show_figure(fig, key="pr_regimes", title=f"Regimes of pruning over {t} × density",
                params={"temperature": t, "rule": rule}, checkpoint_ids=ids)
    st.caption("Zhou et al. (2023): " + " · ".join(f"**{k}** {v}" for k, v in PRUNING_REGIMES.items())
               + ". Their Regime I sits at low density, so there a hotter dense training helps; in Regime II it hurts.")


def pruning_section(svc: Services, zoo_id: str, sweep: dict) -> None:
    """Widgets, the probe sweep, heatmaps, the temperature effect per density, the regime map."""
    params = prune_params()
    done = _panel(svc, zoo_id, params)
    if not done:
        st.info("No cell is pruned yet with these settings: **Prune and probe this zoo** runs it in the background.")
        return
    t, constants = _temperature(sweep)
    if not t:
        st.info("This zoo sweeps nothing but the seed: there is no temperature axis to compare.")
        return
    runs = _runs(svc, zoo_id, done)
    metrics = [m for m in METRICS if m in runs.columns and runs[m].notna().any()]
    cells = pruned_cell_table(runs, t, metrics, constants)
    ids = [c for r in done for c in r.checkpoint_ids]
    content = frame_key(cells)
    st.subheader("The sharp transition: test error against temperature, per density")
    if "test_error" in metrics:
        fig = shared_view(("pruning.effect", content, t), lambda: pfig.temperature_effect_figure(
            cells, "test_error", temperature=t, label="test error"))
        show_figure(fig, key="pr_effect", title=f"Pruned test error relative to the coldest {t}",
                    params={"temperature": t, **params}, checkpoint_ids=ids)
        st.dataframe(temperature_effect(cells, "test_error").rename(columns={"load": "density"}), hide_index=True,
                     key="pr_effect_table")
    st.subheader("Pruned networks' metrics over temperature × density (mean over seeds)")
    cols = st.columns(2)
    for i, m in enumerate(metrics):
        fig = shared_view(("pruning.heatmap", content, m, t), lambda m=m: pfig.metric_heatmap(
            cells, m, label=METRICS[m], temperature=t, load="density"))
        with cols[i % 2]:
            show_figure(fig, key=f"pr_heat_{m}", title=f"{METRICS[m]} over {t} × density",
                        params={"temperature": t, "metric": m, **params}, checkpoint_ids=ids)
    st.subheader("Regimes")
    _regimes(cells, t, ids)
