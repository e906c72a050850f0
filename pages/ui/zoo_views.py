"""Zoo page sections: first-run panel, live runs, runs table, curves, phase diagram."""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from engine.auth import PermissionDenied
from engine.figures import zoo as zfig
from engine.nets import describe_built_by

from .reads import live_zoo_runs, logged_runs_without_data, zoo_jobs
from .report_draft import show_figure
from .services import METRICS_TABLES, Services, cached_metrics, cached_runs, current_user, demo_config, may
from .state import query_list, set_query, synced_selectbox
from .text import literal
from .view_cache import frame_key, shared_view

__all__ = ["ORIGINS", "curves_section", "first_run_panel", "live_runs", "phase_section", "runs_section",
           "with_provenance"]

ORIGINS = {"trained": "trained here", "logged": "logged from a script", "imported": "imported"}
MAX_RUN_LINES = 40  # beyond this many runs, curves default to grouping by a hyperparameter
METRICS = ["final_test_acc", "final_train_acc", "final_test_loss", "final_train_loss", "final_gap"]


def first_run_panel(svc: Services) -> None:
    st.title("Welcome to Zooscope")
    st.markdown(
        "Zooscope trains and probes **populations of networks** and shows why they train and generalize "
        "the way they do: loss landscapes and curvature, mode connectivity, representation similarity, "
        "Rashomon sets, and phase diagrams of all of these across hyperparameters.\n\n"
        "This store is empty. Start with the demo: **18 small MLPs on MNIST-1D** "
        "(3 widths × 2 learning rates × 3 seeds), trained as populations in a background worker — "
        "under a minute on two idle CPU cores (18 s measured). The page lights up as runs finish."
    )
    if not may("launch"):
        st.info("Your role lets you browse and export reports; training needs the editor role (ask an admin).")
        return
    if st.button("Train the demo zoo", type="primary", key="train_demo"):
        svc.dispatcher.submit_sweep(demo_config(), owner=current_user())
        st.rerun()
    st.caption("Or create your own zoo below.")


@st.fragment(run_every=1.5)
def live_runs(svc: Services, zoo_id: str) -> None:
    """Per-run status, step and current loss of this zoo's active jobs, with a cancel button."""
    jobs = zoo_jobs(svc, zoo_id)
    if jobs.empty:
        return
    me = current_user()
    for job in jobs.itertuples():
        cols = st.columns([5, 1])
        cols[0].progress(float(job.progress or 0.0),
                         text=f"{literal(job.kind)} job {literal(job.status)}: {literal(job.message, limit=120)}")
        if may("cancel" if job.owner == me else "cancel_any") and cols[1].button("Cancel", key=f"cancel_{job.job_id}"):
            try:
                svc.dispatcher.cancel(job.job_id, user=me)
            except PermissionDenied as exc:
                st.error(literal(exc))
    runs, live = live_zoo_runs(svc, zoo_id)
    view = runs[["run_id", "status", *[c for c in runs.columns if c.startswith("hp_")]]].merge(
        live, on="run_id", how="left")
    counts = runs["status"].value_counts().to_dict()
    st.caption(" · ".join(f"{literal(k)}: {v}" for k, v in counts.items()))
    st.dataframe(view.drop(columns=["run_id"]), hide_index=True, height=min(300, 38 + 35 * len(view)),
                 key="live_runs_table")


def runs_section(svc: Services, zoo_id: str) -> tuple[pd.DataFrame, list[str]]:
    """Filterable runs table; selected rows are the selection of every other view (``?runs=``)."""
    runs = cached_runs(svc, zoo_id)
    if runs.empty:
        st.info("This zoo has no runs.")
        return runs, []
    hp = [c for c in runs.columns if c.startswith("hp_")]
    filt = runs
    with st.expander("Filter", expanded=False):
        cols = st.columns(max(1, min(4, len(hp) + 2)))
        for i, col in enumerate([*hp, "status", "owner"]):
            if col not in runs:
                continue
            values = sorted(runs[col].dropna().unique().tolist(), key=str)
            chosen = cols[i % len(cols)].multiselect(literal(col.removeprefix("hp_")), values, key=f"filter_{col}")
            if chosen:
                filt = filt[filt[col].isin(chosen)]
    filt = with_provenance(filt)
    notes = ["message"] if "message" in filt and filt["message"].notna().any() else []
    shown = [c for c in ["name", *hp, "status", *notes, *METRICS, "steps", "wall_s", "origin", "built by", "owner",
                         "run_id"] if c in filt]
    event = st.dataframe(filt[shown], hide_index=True, on_select="rerun", selection_mode="multi-row",
                         key="runs_table", column_config={"run_id": st.column_config.TextColumn("run id"),
                                                          "built by": st.column_config.TextColumn("built by")})
    picked = [filt["run_id"].iloc[i] for i in event.selection.rows] if event.selection.rows else []
    if picked:
        set_query(runs=picked)
    selected = picked or [r for r in query_list("runs") if r in set(runs["run_id"])]
    statuses = ", ".join(f"{n} {literal(status)}" for status, n in filt["status"].value_counts().items())
    st.caption(f"{len(filt)} of {len(runs)} runs shown ({statuses}) · {len(selected) or 'no'} selected "
               "(select rows to focus the curves and the other pages)")
    built = filt.loc[filt["run_id"].isin(selected), "built_by_json"].dropna().unique() if "built_by_json" in filt \
        else []
    if len(built):
        with st.expander("What built the selected runs", expanded=False):
            for record in built[:5]:
                st.json(json.loads(record), expanded=False)
    _unloadable_data_note(svc, zoo_id)
    return runs, selected


def with_provenance(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with ``origin`` in words and a ``built by`` column (factory, kwargs, short source hash)."""
    if "origin" not in runs:
        return runs
    out = runs.copy()
    out["origin"] = [ORIGINS.get(o, o) if isinstance(o, str) else "" for o in runs["origin"]]
    out["built by"] = [describe_built_by(json.loads(b)) if isinstance(b, str) and b else ""
                       for b in runs.get("built_by_json", pd.Series([None] * len(runs), index=runs.index))]
    return out


def _unloadable_data_note(svc: Services, zoo_id: str) -> None:
    """Logged runs name their dataset; say which ones this server cannot load (probes need the data)."""
    missing = logged_runs_without_data(svc, zoo_id)
    if missing:
        names = ", ".join(sorted({f"'{literal(r['dataset'])}'" for r in missing}))
        st.warning(f"{len(missing)} logged run(s) name dataset {names}, which is neither built in nor registered "
                   "in this store: probes that evaluate on data (landscape, connectivity, representations) cannot "
                   "run on them until it is registered under that name. Their curves and checkpoints are shown.",
                   icon=":material/database:")


def curves_section(svc: Services, runs: pd.DataFrame, selected: list[str]) -> None:
    focus = runs[runs["run_id"].isin(selected)] if selected else runs
    hp = zfig.hparam_columns(runs)
    c1, c2, c3 = st.columns(3)
    name = synced_selectbox("Metric", ["loss", "acc"], key="curve_metric", container=c1)
    # A line per run is unreadable (and slow to draw) for a large zoo: group by a hyperparameter instead.
    color_by = synced_selectbox("Group by", ["(each run)", *hp], key="curve_group", container=c2,
                                format_func=lambda c: c.removeprefix("hp_"),
                                default=hp[0] if hp and len(focus) > MAX_RUN_LINES else None)
    log_x = c3.toggle("log step axis", value=True, key="curve_logx")
    group = None if color_by == "(each run)" else color_by
    fig = shared_view(("zoo.curves", svc.version(*METRICS_TABLES), frame_key(focus), name, group, log_x),
                      lambda: zfig.training_curves(cached_metrics(svc, tuple(focus["run_id"])),
                                                   focus, name=name, color_by=group, log_x=log_x))
    show_figure(fig, key="curves_chart", title=f"Training curves ({name})",
                params={"metric": name, "group_by": color_by, "log_x": log_x}, run_ids=focus["run_id"].tolist())


def phase_section(runs: pd.DataFrame) -> list[str]:
    """Heatmap over two hyperparameters; a clicked cell selects its runs."""
    hp = zfig.hparam_columns(runs)
    probes = sorted(c for c in runs.columns if c.startswith("probe_"))  # from a zoo-wide probe sweep (Phases page)
    metrics = [m for m in [*METRICS, *probes] if m in runs and runs[m].notna().any()]
    if len(hp) < 2 or not metrics:
        st.info("A phase diagram needs a zoo swept over at least two hyperparameters with finished runs.")
        return []
    c1, c2, c3 = st.columns(3)
    fmt = lambda c: c.removeprefix("hp_").removeprefix("final_").replace("probe_", "probe: ")  # noqa: E731
    x = synced_selectbox("x axis", hp, key="phase_x", container=c1, format_func=fmt)
    y = synced_selectbox("y axis", [h for h in hp if h != x], key="phase_y", container=c2, format_func=fmt)
    metric = synced_selectbox("Metric", metrics, key="phase_metric", container=c3, format_func=fmt)
    content = frame_key(runs)
    fig = shared_view(("zoo.phases", content, x, y, metric), lambda: zfig.phase_diagram(runs, x, y, metric))
    event = show_figure(fig, key="phase_chart",
                        title=f"Phase diagram: {fmt(metric)} over {fmt(x)} × {fmt(y)}",
                        params={"x": x, "y": y, "metric": metric}, run_ids=runs["run_id"].tolist(),
                        on_select="rerun", selection_mode="points")
    dims = [h for h in hp]
    st.plotly_chart(shared_view(("zoo.parcoords", content, tuple(dims), metric),
                                lambda: zfig.parallel_coordinates(runs, dims, metric)), key="parcoords_chart")
    points = event.selection.points if event and event.selection else []
    cells = zfig.phase_table(runs, x, y, metric)
    picked = []
    for p in points:
        # the figure's categories are the escaped values (zfig.escape): compare like with like
        match = cells[(cells[x].map(zfig.escape) == str(p["x"])) & (cells[y].map(zfig.escape) == str(p["y"]))]
        for ids in match["run_ids"]:
            picked.extend(ids)
    if picked:
        set_query(runs=picked)
        st.caption(f"Selected the {len(picked)} runs of the clicked cell.")
    return picked
