"""Pick runs and checkpoints (kept in the URL), and wait for probe results without blocking."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from engine.auth import PermissionDenied
from engine.jobs import ProbeService, ProbeStatus

from .reads import run_checkpoints
from .services import Services, cached_runs, current_user, may
from .state import query_list, synced_selectbox
from .text import literal

__all__ = ["PICKABLE_STATUSES", "checkpoints_of", "pick_checkpoint", "pick_run", "pick_runs", "pickable_runs",
           "probe_result"]

# Runs a probe may look at, if they have a stored checkpoint: finished ones, and runs that ended early
# (a logged run whose script crashed or exited, a run that failed) so that a crash can be looked into.
PICKABLE_STATUSES = ("done", "diverged", "stopped", "failed")


def checkpoints_of(svc: Services, run_id: str) -> pd.DataFrame:
    """The run's checkpoints, by step (cached until the catalog changes)."""
    return run_checkpoints(svc, run_id)


def _run_label(runs: pd.DataFrame):
    names = dict(zip(runs["run_id"], runs["name"].fillna(runs["run_id"])))
    status = dict(zip(runs["run_id"], runs["status"]))
    acc = dict(zip(runs["run_id"], runs.get("final_test_acc", pd.Series(dtype=float))))
    return lambda r: (f"{names.get(r, r)}" + (f" · {status[r]}" if status.get(r, "done") != "done" else "")
                      + (f" · test acc {acc[r]:.3f}" if pd.notna(acc.get(r)) else ""))


def pickable_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``runs`` (a runs table) a probe may be asked of: a status in
    :data:`PICKABLE_STATUSES` and at least one checkpoint."""
    return runs[runs["status"].isin(PICKABLE_STATUSES) & runs["last_checkpoint_id"].notna()]


def _finished(svc: Services, zoo_id: str) -> pd.DataFrame:
    return pickable_runs(cached_runs(svc, zoo_id))


def pick_run(svc: Services, zoo_id: str, *, key: str = "run", label: str = "Run", container=st) -> str | None:
    """One run of the zoo with checkpoints (``?run=``), its status shown unless done; the Zoo page's
    row selection comes first."""
    runs = _finished(svc, zoo_id)
    if runs.empty:
        return None
    options = runs["run_id"].tolist()
    selected = [r for r in query_list("runs") if r in options]
    if selected and key not in st.session_state and key not in st.query_params:
        st.session_state[key] = selected[0]
    return synced_selectbox(label, options, key=key, format_func=_run_label(runs), container=container)


def pick_runs(svc: Services, zoo_id: str, *, key: str = "runs_pick", label: str = "Runs", max_runs: int = 8,
              container=st) -> list[str]:
    """Several runs with checkpoints (``?runs=``, shared with the Zoo page's selection)."""
    from .state import synced_multiselect

    runs = _finished(svc, zoo_id)
    options = runs["run_id"].tolist()
    return synced_multiselect(label, options, key=key, param="runs", default=options[:2],
                              format_func=_run_label(runs), max_selections=max_runs, container=container)


def pick_checkpoint(svc: Services, run_id: str, *, key: str = "ckpt", label: str = "Checkpoint",
                    container=st) -> dict | None:
    """One checkpoint of the run by step (``?ckpt=``), the last one by default."""
    ckpts = checkpoints_of(svc, run_id)
    if ckpts.empty:
        return None
    ids = ckpts["checkpoint_id"].tolist()
    steps = dict(zip(ids, ckpts["step"]))
    if key not in st.session_state and st.query_params.get(key) not in ids:
        st.session_state[key] = ids[-1]
    chosen = synced_selectbox(label, ids, key=key, format_func=lambda c: f"step {steps[c]}", container=container)
    return ckpts.set_index("checkpoint_id").loc[chosen].to_dict() | {"checkpoint_id": chosen}


def probe_result(svc: Services, probe: str, params: dict, checkpoint_ids: list[str], *,
                 key: str, auto: bool = False, label: str = "Compute") -> ProbeStatus | None:
    """The stored result of a probe, or a button that queues it and a live progress bar.

    Results are shared: a probe asked before (by anyone) is shown at once. With
    ``auto=True`` a missing result is queued without waiting for a click (for cheap probes).
    Returns the status when done, None while it is not.
    """
    service = ProbeService(svc.dispatcher)
    try:
        status = service.status(probe, params, checkpoint_ids)
    except ValueError as exc:
        st.error(literal(exc))
        return None
    if status.state == "done":
        return status
    if status.state == "failed":
        st.error(f"The last attempt failed: {literal(status.job.get('error'), limit=500)}")
    if status.state in ("missing", "failed"):
        if not may("launch"):
            st.info("Not computed yet. Anyone with the editor role can compute it; the result is then shared.")
            return None
        if auto or st.button(label, key=f"{key}_go", type="primary"):
            try:
                service.request(probe, params, checkpoint_ids, owner=current_user())
            except (PermissionDenied, ValueError) as exc:  # ValueError: e.g. a checkpoint without stored weights
                st.error(literal(exc))
                return None
            st.rerun()
        return None
    _wait(svc, probe, params, checkpoint_ids, key)
    return None


@st.fragment(run_every=1.0)
def _wait(svc: Services, probe: str, params: dict, checkpoint_ids: list[str], key: str) -> None:
    """Progress of the job computing a probe; reruns the page once the result is stored."""
    status = ProbeService(svc.dispatcher).status(probe, params, checkpoint_ids)
    if status.state in ("done", "failed"):
        st.rerun(scope="app")
    message = literal((status.job or {}).get("message") or status.state, limit=120)
    st.progress(status.progress, text=f"{message} — computed in a background worker; this updates by itself")
