"""Phases page sections: the zoo-wide probe sweep, metric heatmaps, the phase map, deep links, grokking."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pandas as pd
import streamlit as st

from engine.auth import PermissionDenied
from engine.figures import phases as pfig
from engine.jobs import phase_cells_status, probe_phase_cells
from engine.jobs.builtin_probes.phases import PhaseCellParams
from engine.probes.phases import (
    PHASE_METRICS,
    PhaseThresholds,
    classify_phases,
    default_thresholds,
    grokking_steps,
)

from .pickers import checkpoints_of, probe_result
from .reads import run_metrics
from .report_draft import show_figure
from .services import Services, cached_runs, current_user, may
from .state import synced_selectbox
from .text import literal
from .view_cache import frame_key, shared_view

__all__ = ["axes_picker", "cell_links", "grokking_section", "heatmaps_section", "phase_section",
           "cells_panel", "cells_table"]

PROBE = "sweep.cell"


def cell_params() -> dict:
    """The sweep's probe parameters: the defaults, plus dimensions when asked (kept in the URL)."""
    dims = st.toggle("Also effective rank and TwoNN dimension", key="ph_dims",
                     value=st.query_params.get("dims") == "1")
    st.query_params["dims"] = "1" if dims else "0"
    groups = PhaseCellParams().metrics + (("dimension",) if dims else ())
    return PhaseCellParams(metrics=groups).model_dump(mode="json")


def _counts(requests) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in requests:
        out[r.status.state] = out.get(r.status.state, 0) + 1
    return out


@st.cache_data(show_spinner=False, max_entries=32)
def _cells_status(_svc: Services, zoo_id: str, params_json: str, generation: int) -> list:
    """Every cell's request and its stored result, read once per catalog change, not on every rerun."""
    return phase_cells_status(_svc.dispatcher, zoo_id, PROBE, json.loads(params_json))


def cells_panel(svc: Services, zoo_id: str, params: dict) -> list:
    """Where the sweep stands; a button that queues the missing cells; live progress while it runs."""
    requests = _cells_status(svc, zoo_id, json.dumps(params, sort_keys=True), svc.generation)
    counts = _counts(requests)
    done = counts.get("done", 0)
    st.caption(f"{len(requests)} cells (seeds of one hyperparameter setting, final checkpoints): {done} probed, "
               f"{counts.get('running', 0) + counts.get('queued', 0)} in progress, "
               f"{counts.get('missing', 0)} not yet, {counts.get('failed', 0)} failed. Results are shared: "
               "a cell probed before, by anyone, is not computed again.")
    if done < len(requests) and not may("launch"):
        st.info("Cells not probed yet can be probed by anyone with the editor role; the results are then shared.")
    elif done < len(requests) and st.button("Probe this zoo", key="ph_go", type="primary",
                                            help="One background job per cell: evaluation, Hessian top "
                                                 "eigenvalue and trace, naive and aligned barriers, CKA"):
        try:
            probe_phase_cells(svc.dispatcher, zoo_id, PROBE, params, owner=current_user())
        except PermissionDenied as exc:  # the job layer decides, whatever the button showed
            st.error(literal(exc))
        else:
            st.rerun()
    if counts.get("running", 0) + counts.get("queued", 0):
        _progress(svc, zoo_id, params)
    return [r for r in requests if r.status.state == "done"]


@st.fragment(run_every=2.0)
def _progress(svc: Services, zoo_id: str, params: dict) -> None:
    requests = phase_cells_status(svc.dispatcher, zoo_id, PROBE, params)
    active = [r for r in requests if r.status.state in ("queued", "running")]
    if not active:
        st.rerun(scope="app")
    frac = sum(1.0 if r.status.state == "done" else r.status.progress for r in requests) / max(len(requests), 1)
    st.progress(frac, text=f"{len(active)} cells left — computed in background workers; this updates by itself")


def cells_table(svc: Services, zoo_id: str, done: list) -> pd.DataFrame:
    """One row per probed run: the runs table (hyperparameters) joined with the probe's values."""
    rows = []
    for r in done:
        cell = r.status.typed()  # PhaseCellResult
        for i, (run_id, step) in enumerate(zip(cell.run_ids, cell.steps)):
            rows.append({"run_id": run_id, "probe_step": step, **{k: v[i] for k, v in cell.values.items()}})
    values = pd.DataFrame(rows).drop_duplicates("run_id", keep="last")
    runs = cached_runs(svc, zoo_id)
    runs = runs[[c for c in runs.columns if not c.startswith("probe_")]]
    return runs.merge(values, on="run_id", how="inner")


def _axis_options(sweep: dict) -> list[str]:
    swept = [k for k in (sweep.get("grid") or {}) if k != "seed"]
    options = list(swept)
    if "lr" in swept:
        options += ["lr/batch_size"]
    return options


def axes_picker(sweep: dict) -> tuple[str, str, dict]:
    """Temperature and load axes (``?temp=``, ``?load=``), the sweep file's ``[phases]`` by default."""
    options = _axis_options(sweep)
    phases = sweep.get("phases") or {}
    for which in ("temperature", "load"):
        if phases.get(which) and phases[which] not in options:
            options.append(phases[which])
    swept = [o for o in options if "/" not in o and "*" not in o]
    c1, c2 = st.columns(2)
    t = synced_selectbox("Temperature axis", options, key="ph_temp", param="temp", container=c1,
                         default=phases.get("temperature") or (sweep.get("temperature") or [None])[0]
                         or ("lr/batch_size" if "lr" in swept else options[0]))
    load_default = phases.get("load") or (sweep.get("load") or [None])[0] or next(
        (o for o in swept if o != t), options[-1])
    ld = synced_selectbox("Load axis", options, key="ph_load", param="load", container=c2, default=load_default)
    base = sweep.get("base") or {}
    constants = {"batch_size": base.get("batch_size"), "lr": (base.get("optim") or {}).get("lr"),
                 "width": (base.get("arch") or {}).get("width"), "depth": (base.get("arch") or {}).get("depth"),
                 "weight_decay": (base.get("optim") or {}).get("weight_decay"),
                 "train_fraction": (base.get("dataset") or {}).get("train_fraction"),
                 "label_noise": (base.get("dataset") or {}).get("label_noise")}
    return t, ld, {k: v for k, v in constants.items() if v is not None}


def heatmaps_section(cells: pd.DataFrame, metrics: list[str], t: str, ld: str, ids: list[str]) -> None:
    cols = st.columns(2)
    content = frame_key(cells)
    for i, m in enumerate(metrics):
        fig = shared_view(("phases.heatmap", content, m, t, ld), lambda m=m: pfig.metric_heatmap(
            cells, m, label=PHASE_METRICS.get(m, m), temperature=t, load=ld))
        with cols[i % 2]:
            show_figure(fig, key=f"ph_heat_{m}", title=f"{PHASE_METRICS.get(m, m)} over {t} × {ld}",
                        params={"temperature": t, "load": ld, "metric": m}, checkpoint_ids=ids)


def _thresholds(cells: pd.DataFrame) -> PhaseThresholds:
    c = st.columns(3)
    sharp_m = c[0].selectbox("Local: sharpness metric", ["hessian_top", "hessian_trace"], key="ph_sm")
    barrier_m = c[1].selectbox("Global: barrier", ["barrier_aligned", "barrier_naive"], key="ph_bm",
                               format_func={"barrier_aligned": "after weight matching",
                                            "barrier_naive": "naive"}.get)
    c[2].markdown("Representation: mean linear CKA")
    d = default_thresholds(cells, sharpness_metric=sharp_m, barrier_metric=barrier_m)
    out = []
    for col, what, value, metric in ((c[0], "sharp above", d.sharpness, sharp_m),
                                     (c[1], "poorly connected above", d.barrier, barrier_m),
                                     (c[2], "similar at or above", d.similarity, "cka_mean")):
        out.append(col.number_input(f"{what} (median {value:.4g})", value=float(value) if value == value else 0.0,
                                    key=f"ph_cut_{metric}", format="%.4g"))
    return PhaseThresholds(*out, sharp_m, barrier_m, "cka_mean")


def phase_section(cells: pd.DataFrame, t: str, ld: str, ids: list[str]) -> pd.DataFrame:
    """Thresholds (medians by default, editable) and the phase map; returns the classified cells."""
    st.caption("Phases of Yang et al. (2021): I poorly connected · sharp, II poorly connected · flat, "
               "III well connected · sharp, IV-A well connected · flat · dissimilar, IV-B well connected · flat · "
               "similar. Barriers here are straight-line max_minus_linear loss barriers on training data "
               "(Yang et al. used Bézier curves).")
    th = _thresholds(cells)
    classified = classify_phases(cells, th)
    text = (f"sharp: {th.sharpness_metric} > {th.sharpness:.4g} · poorly connected: {th.barrier_metric} > "
            f"{th.barrier:.4g} · similar: cka_mean ≥ {th.similarity:.4g}")
    fig = shared_view(("phases.map", frame_key(classified), t, ld, text),
                      lambda: pfig.phase_map(classified, temperature=t, load=ld, thresholds_text=text))
    event = show_figure(fig, key="ph_map", title=f"Phase map over {t} × {ld}",
                        params={"temperature": t, "load": ld, "thresholds": json.loads(json.dumps(th.__dict__))},
                        checkpoint_ids=ids, on_select="rerun", selection_mode="points")
    st.caption(literal(text) + " · click a cell to open it below")
    _select_clicked(event, classified)
    return classified


def _select_clicked(event, classified: pd.DataFrame) -> None:
    """A click on the phase map picks that cell in the cell selector below."""
    points = event.selection.points if event and event.selection else []
    for p in points[:1]:
        hit = [i for i, r in enumerate(classified.itertuples())
               if pfig.tick_label(r.temperature) == str(p.get("x")) and pfig.tick_label(r.load) == str(p.get("y"))]
        if hit and st.session_state.get("ph_cell") != hit[0]:
            st.session_state["ph_cell"] = hit[0]


def _link(page: str, **query) -> str:
    return f"./{page}?{urlencode(query, safe=',')}"


def cell_links(classified: pd.DataFrame, zoo_id: str, t: str, ld: str) -> None:
    """Pick a cell (``?cell=``); links open its runs on the other pages with the view preset."""
    labels = [f"{t} = {r.temperature:.3g}, {ld} = {r.load:.3g} — {r.label}" for r in classified.itertuples()]
    i = synced_selectbox("Cell", list(range(len(labels))), key="ph_cell", param="cell",
                         format_func=lambda k: labels[k])
    runs = list(classified.iloc[i]["run_ids"])
    pair = runs[:2]
    st.markdown(" · ".join([
        f"[Landscape of its first run]({_link('landscape', zoo=zoo_id, run=runs[0], runs=','.join(runs))})",
        f"[Connectivity of two seeds]({_link('connectivity', zoo=zoo_id, runs=','.join(pair))})",
        f"[Representations of two seeds]({_link('representations', zoo=zoo_id, runs=','.join(pair), run=runs[0])})",
    ]))
    st.caption(f"{len(runs)} runs: " + ", ".join(literal(r[:8]) for r in runs))


def _curves(svc: Services, run_id: str) -> pd.DataFrame:
    m = run_metrics(svc, run_id, ["acc"])
    wide = m[m["split"].isin(["train", "test"])].pivot_table(index="step", columns="split", values="value")
    return wide.dropna().reset_index()


def grokking_section(svc: Services, run_id: str) -> None:
    """Train/test accuracy, the memorisation and grokking steps, weight norm and sharpness per checkpoint."""
    curves = _curves(svc, run_id)
    if len(curves) < 2:
        st.info("This run has fewer than two checkpoints with train and test accuracy.")
        return
    threshold = st.slider("Accuracy that counts as reached", 0.5, 1.0, 0.9, 0.01, key="ph_grok_th")
    g = grokking_steps(curves["step"], curves["train"], curves["test"], threshold=threshold)
    ids = checkpoints_of(svc, run_id)["checkpoint_id"].tolist()
    probes = {}
    norm = probe_result(svc, "weights.norm", {}, ids, key="ph_norm", auto=True)
    if norm is not None:
        norms = norm.typed()  # WeightNorms
        probes["weight norm"] = (list(norms.steps), list(norms.norm))
    sharp = probe_result(svc, "curvature.sharpness", {}, ids, key="ph_sharp",
                         label="Compute the top Hessian eigenvalue at every checkpoint") if len(ids) > 1 else None
    if sharp is not None:
        sharpness = sharp.typed()  # Sharpness
        probes["top Hessian eigenvalue"] = (sharpness.steps, sharpness.eigenvalues[:, 0])
    fig = pfig.grokking_figure(curves["step"], curves["train"], curves["test"], memorized_step=g.memorized_step,
                               generalized_step=g.generalized_step, probes=probes)
    show_figure(fig, key="ph_grok", title="Grokking: accuracy and probes over training",
                params={"threshold": threshold}, checkpoint_ids=ids, run_ids=[run_id])
    if g.memorized_step is None:
        st.caption(f"Training accuracy never reached {threshold:.2f}.")
    elif g.generalized_step is None:
        st.caption(f"Memorised (train ≥ {threshold:.2f}) at step {g.memorized_step}; test accuracy has not followed.")
    else:
        st.caption(f"Memorised at step {g.memorized_step}; test accuracy reached {threshold:.2f} at step "
                   f"{g.generalized_step}: {'grokking, ' if g.grokked else ''}a delay of {g.delay} steps.")
