"""The read model: every catalog query a page makes, by name, cached until the catalog changes.

Pages never call the store themselves (no ``svc.store.…``, no SQL); they call these. Each read
takes the services and returns a table or a dict the page only displays or filters. Cached
reads take ``svc.version(*tables)`` of the tables they read as their key (``Store.data_version``:
per-table write counters of the owner, the only writer), so a write to one of them invalidates
them and nothing else does: the metric rows a training job hands in every second leave the
checkpoint and run reads warm, and the polled job list is read once per job-table write, not
once per session and refresh.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from engine.report import Report, list_stored_reports, load_report

from .services import RUNS_TABLES, Services

__all__ = ["job_overview", "live_zoo_runs", "logged_runs_without_data", "queue_positions", "run_checkpoints",
           "run_metrics", "run_record", "stored_report", "stored_reports", "zoo_checkpoint_table", "zoo_checkpoints",
           "zoo_jobs", "zoo_sweep"]


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
def _cached_zoo_checkpoints(_svc: Services, zoo_id: str, version: tuple) -> pd.DataFrame:
    return zoo_checkpoint_table(_svc.store, zoo_id)


def zoo_checkpoints(svc: Services, zoo_id: str) -> pd.DataFrame:
    """Stored checkpoints (with weights) of the zoo's finished runs, with run name and data set.

    Columns ``checkpoint_id, run_id, step, name, dataset``, sorted by run name, run and step.
    """
    return _cached_zoo_checkpoints(svc, zoo_id, svc.version(*RUNS_TABLES))


# -- runs and checkpoints ------------------------------------------------------------------------------------

@st.cache_data(show_spinner=False, max_entries=128)
def _run_checkpoints(_svc: Services, run_id: str, version: tuple) -> pd.DataFrame:
    return _svc.store.list_checkpoints(run_id).sort_values("step").reset_index(drop=True)


def run_checkpoints(svc: Services, run_id: str) -> pd.DataFrame:
    """The run's checkpoints, by step (cached until a checkpoint or run row is written)."""
    return _run_checkpoints(svc, run_id, svc.version("checkpoint", "run"))


@st.cache_data(show_spinner=False, max_entries=256)
def _run_record(_svc: Services, run_id: str, version: tuple) -> dict[str, Any]:
    return _svc.store.get_run(run_id)


def run_record(svc: Services, run_id: str) -> dict[str, Any]:
    """One run's row with its ``config`` (a dict), cached until a run row is written."""
    return _run_record(svc, run_id, svc.version("run"))


def run_metrics(svc: Services, run_id: str, names: list[str]) -> pd.DataFrame:
    """The run's ``metric`` rows of these names (``step, split, name, value``)."""
    return svc.store.metrics([run_id], names=names)


@st.cache_data(show_spinner=False, max_entries=32)
def _logged_runs_without_data(_svc: Services, zoo_id: str, version: tuple) -> list[dict[str, Any]]:
    from engine.data import available

    known = set(available()) | set(_svc.store.registered_dataset_names())
    return [row for row in _svc.store.logged_run_datasets(zoo_id) if row["dataset"] not in known]


def logged_runs_without_data(svc: Services, zoo_id: str) -> list[dict[str, Any]]:
    """The zoo's runs logged from a script whose dataset this server cannot load (``run_id, name, dataset``)."""
    return _logged_runs_without_data(svc, zoo_id, svc.version("run", "dataset"))


def zoo_sweep(svc: Services, zoo_id: str) -> dict[str, Any]:
    """The sweep spec the zoo was made from (``{}`` for an imported zoo)."""
    return svc.store.get_zoo(zoo_id).get("sweep") or {}


# -- live state (polled: cached per write of the tables they read, so every session's poll shares one read) ------

@st.cache_data(show_spinner=False, max_entries=16)
def _jobs(_svc: Services, version: tuple) -> pd.DataFrame:
    return _svc.store.list_jobs()


def zoo_jobs(svc: Services, zoo_id: str, statuses: tuple[str, ...] = ("running", "queued")) -> pd.DataFrame:
    """The zoo's jobs in these states, as of the last job-table write."""
    jobs = _jobs(svc, svc.version("job"))
    return jobs[(jobs["zoo_id"] == zoo_id) & jobs["status"].isin(list(statuses))]


@st.cache_data(show_spinner=False, max_entries=32)
def _live_zoo_runs(_svc: Services, zoo_id: str, version: tuple) -> tuple[pd.DataFrame, pd.DataFrame]:
    return _svc.store.runs_table(zoo_id), _svc.store.latest_batch_loss(zoo_id)


def live_zoo_runs(svc: Services, zoo_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(runs table, latest batch loss per run)`` of the zoo (for the live-runs view)."""
    return _live_zoo_runs(svc, zoo_id, svc.version(*RUNS_TABLES, "metric"))


@st.cache_data(show_spinner=False, max_entries=16)
def _job_overview(_svc: Services, recent: int, version: tuple) -> pd.DataFrame:
    return _svc.store.job_overview(recent=recent)


def job_overview(svc: Services, recent: int = 3) -> pd.DataFrame:
    """Running and queued jobs, and the ``recent`` last finished ones (the sidebar's job list)."""
    return _job_overview(svc, recent, svc.version("job"))


@st.cache_data(show_spinner=False, max_entries=16)
def _queue_positions(_svc: Services, version: tuple) -> dict[str, int]:
    return _svc.store.queue_positions()


def queue_positions(svc: Services) -> dict[str, int]:
    """Queued job id -> its place in the fair queue."""
    return _queue_positions(svc, svc.version("job"))


# -- stored reports ------------------------------------------------------------------------------------------

def stored_reports(svc: Services) -> pd.DataFrame:
    """The stored reports (``report_id, title, author, created_at``), newest first."""
    return list_stored_reports(svc.store)


def stored_report(svc: Services, report_id: str) -> Report:
    """One stored report, with its figures."""
    return load_report(svc.store, report_id)
