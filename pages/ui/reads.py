"""The read model: every catalog query a page makes, by name, cached until the catalog changes.

Pages never call the store themselves (no ``svc.store.…``, no SQL); they call these. Each read
takes the services and returns a table or a dict the page only displays or filters. Cached
reads take ``svc.generation`` as their key, so a job that hands in new rows invalidates them.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from engine.report import Report, list_stored_reports, load_report

from .services import Services

__all__ = ["job_overview", "live_zoo_runs", "queue_positions", "run_checkpoints", "run_metrics", "run_record",
           "stored_report", "stored_reports", "zoo_checkpoint_table", "zoo_checkpoints", "zoo_jobs", "zoo_sweep"]


def zoo_checkpoint_table(store, zoo_id: str) -> pd.DataFrame:
    """:func:`zoo_checkpoints` read from a store directly, uncached (scripts and tests, before a server owns it)."""
    runs = store.runs_table(zoo_id)
    runs = runs[runs["status"] == "done"][["run_id", "name"]]
    configs = store.list_runs(zoo_id)[["run_id", "config_json"]]
    configs["dataset"] = [json.loads(c or "{}").get("dataset", {}).get("name", "?") for c in configs["config_json"]]
    ck = store.list_checkpoints(zoo_id=zoo_id)
    ck = ck[ck["artifact_sha"].notna()][["checkpoint_id", "run_id", "step"]]
    return (ck.merge(runs, on="run_id").merge(configs[["run_id", "dataset"]], on="run_id")
            .sort_values(["name", "run_id", "step"]).reset_index(drop=True))


@st.cache_data(show_spinner=False, max_entries=32)
def _cached_zoo_checkpoints(_svc: Services, zoo_id: str, generation: int) -> pd.DataFrame:
    return zoo_checkpoint_table(_svc.store, zoo_id)


def zoo_checkpoints(svc: Services, zoo_id: str) -> pd.DataFrame:
    """Stored checkpoints (with weights) of the zoo's finished runs, with run name and data set.

    Columns ``checkpoint_id, run_id, step, name, dataset``, sorted by run name, run and step.
    """
    return _cached_zoo_checkpoints(svc, zoo_id, svc.generation)


# -- runs and checkpoints ------------------------------------------------------------------------------------

@st.cache_data(show_spinner=False, max_entries=128)
def _run_checkpoints(_svc: Services, run_id: str, generation: int) -> pd.DataFrame:
    return _svc.store.list_checkpoints(run_id).sort_values("step").reset_index(drop=True)


def run_checkpoints(svc: Services, run_id: str) -> pd.DataFrame:
    """The run's checkpoints, by step (cached until the catalog changes)."""
    return _run_checkpoints(svc, run_id, svc.generation)


@st.cache_data(show_spinner=False, max_entries=256)
def _run_record(_svc: Services, run_id: str, generation: int) -> dict[str, Any]:
    return _svc.store.get_run(run_id)


def run_record(svc: Services, run_id: str) -> dict[str, Any]:
    """One run's row with its ``config`` (a dict), cached until the catalog changes; do not change it."""
    return _run_record(svc, run_id, svc.generation)


def run_metrics(svc: Services, run_id: str, names: list[str]) -> pd.DataFrame:
    """The run's ``metric`` rows of these names (``step, split, name, value``)."""
    return svc.store.metrics([run_id], names=names)


def zoo_sweep(svc: Services, zoo_id: str) -> dict[str, Any]:
    """The sweep spec the zoo was made from (``{}`` for an imported zoo)."""
    return svc.store.get_zoo(zoo_id).get("sweep") or {}


# -- live state (never cached: these views poll) -------------------------------------------------------------

def zoo_jobs(svc: Services, zoo_id: str, statuses: tuple[str, ...] = ("running", "queued")) -> pd.DataFrame:
    """The zoo's jobs in these states, read now."""
    jobs = svc.store.list_jobs()
    return jobs[(jobs["zoo_id"] == zoo_id) & jobs["status"].isin(list(statuses))]


def live_zoo_runs(svc: Services, zoo_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(runs table, latest batch loss per run)`` of the zoo, read now (for the live-runs view)."""
    return svc.store.runs_table(zoo_id), svc.store.latest_batch_loss(zoo_id)


def job_overview(svc: Services, recent: int = 3) -> pd.DataFrame:
    """Running and queued jobs, and the ``recent`` last finished ones (the sidebar's job list)."""
    return svc.store.job_overview(recent=recent)


def queue_positions(svc: Services) -> dict[str, int]:
    """Queued job id -> its place in the fair queue."""
    return svc.store.queue_positions()


# -- stored reports ------------------------------------------------------------------------------------------

def stored_reports(svc: Services) -> pd.DataFrame:
    """The stored reports (``report_id, title, author, created_at``), newest first."""
    return list_stored_reports(svc.store)


def stored_report(svc: Services, report_id: str) -> Report:
    """One stored report, with its figures."""
    return load_report(svc.store, report_id)
