"""The sidebar: who is signed in, the current zoo, the live job queue, and links."""

from __future__ import annotations

import time

import pandas as pd
import streamlit as st

from .reads import job_overview, queue_positions
from .services import Services, cached_zoos, current_user, store_path
from .signin import account_box
from .state import synced_selectbox
from .text import literal

__all__ = ["job_queue", "page_start", "sidebar", "zoo_label"]


def zoo_label(zoos: pd.DataFrame):
    names = dict(zip(zoos["zoo_id"], zoos["name"]))
    counts = dict(zip(zoos["zoo_id"], zoos.get("n_runs", pd.Series(0, index=zoos.index))))
    def label(zoo_id: str) -> str:
        n = counts.get(zoo_id, 0)
        return f"{names.get(zoo_id, zoo_id)} ({n} run{'' if n == 1 else 's'})"

    return label


def sidebar(svc: Services) -> str | None:
    """Draw the sidebar; returns the selected zoo id (kept in the URL as ``?zoo=``)."""
    zoos = cached_zoos(svc)
    with st.sidebar:
        account_box(svc)
        if svc.dispatcher.fault:  # the owner refuses writes until restarted (a catalog file vanished under it)
            st.error(f"The store refuses new work: {literal(svc.dispatcher.fault)} Restart the server; "
                     "nothing committed is lost.")
        zoo_id = None
        if not zoos.empty:
            zoo_id = synced_selectbox("Zoo", zoos["zoo_id"].tolist(), key="zoo", format_func=zoo_label(zoos))
        job_queue(svc)
        st.caption(f"Store: {literal(store_path())}")
        st.caption("Share a view: the address bar holds the zoo, runs and settings shown.")
    return zoo_id


_ICON = {"running": ":material/autorenew:", "queued": ":material/schedule:", "failed": ":material/error:",
         "done": ":material/check_circle:", "cancelled": ":material/cancel:"}


_REFRESH_S = 10.0  # while jobs only add rows (a training run's checkpoints), pages refresh at most this often


def _catalog_news(svc: Services) -> bool:
    """Whether this session's page should run again: at once when a job was queued, started or ended;
    at most every ``_REFRESH_S`` seconds when a running job only added rows. Every bundle a training
    job hands in changes the catalog, and rerunning every open page each time was half the page
    runs of the load test (20 sessions while a zoo trained)."""
    state = st.session_state
    seen = state.setdefault("_seen_generation", svc.generation)
    seen_jobs = state.setdefault("_seen_job_generation", svc.dispatcher.job_generation)
    if svc.generation == seen:
        return False
    now = time.monotonic()
    if svc.dispatcher.job_generation == seen_jobs and now - state.get("_refreshed_at", 0.0) < _REFRESH_S:
        return False
    state["_seen_generation"], state["_seen_job_generation"] = svc.generation, svc.dispatcher.job_generation
    state["_refreshed_at"] = now
    return True


@st.fragment(run_every=2.0)
def job_queue(svc: Services) -> None:
    """Running and queued jobs with progress, and recent failures; refreshes itself every 2 s."""
    st.subheader("Jobs")
    jobs = job_overview(svc, recent=3)
    if _catalog_news(svc):
        st.rerun(scope="app")
    if jobs.empty:
        st.caption("No jobs yet.")
        return
    active = jobs[jobs["status"].isin(["running", "queued"])]
    recent = jobs[~jobs["status"].isin(["running", "queued"])].head(3)
    for job in active[active["status"] == "running"].sort_values("created_at").itertuples():
        label = f"{_ICON[job.status]} {literal(job.kind)} · {literal(job.owner)}"
        st.progress(float(job.progress or 0.0), text=f"{label} — {literal(job.message, limit=80)}")
    queued = active[active["status"] == "queued"]
    _queued(queued, queue_positions(svc) if not queued.empty else {}, current_user())
    for job in recent.itertuples():
        text = f"{_ICON.get(job.status, '')} {literal(job.kind)} {literal(job.status)}"
        if job.status == "failed":
            st.error(f"{text}: {literal(job.error, limit=280)}", icon=None)
        else:
            st.caption(text)


def _queued(queued: pd.DataFrame, positions: dict[str, int], me: str) -> None:
    """Queued jobs in the order they will start; one's own say so, with their place in the queue."""
    if queued.empty:
        return
    queued = queued.assign(position=queued["job_id"].map(positions)).sort_values("position")
    for job in queued.itertuples():
        where = f"position {int(job.position)} in the queue" if pd.notna(job.position) else "queued"
        if job.owner == me:
            st.caption(f"{_ICON['queued']} **Your {literal(job.kind)} job** — {where}")
        else:
            st.caption(f"{_ICON['queued']} {literal(job.kind)} · {literal(job.owner)} — {where}")


def page_start(title: str) -> tuple[Services, str]:
    """The start every analysis page shares: services, sidebar, title, and a guard when there is no zoo."""
    from .services import get_services

    svc = get_services()
    zoo_id = sidebar(svc)
    st.title(title)
    if zoo_id is None:
        st.info("Train or import a zoo first (Zoo page).")
        st.stop()
    return svc, zoo_id
