"""The read model: every catalog query a page makes, by name, cached until the catalog changes.

Pages never call the store themselves (no ``svc.store.…``, no SQL); they call these. Each read
takes the services and returns a table or a dict the page only displays or filters. Cached
reads take ``svc.generation`` as their key, so a job that hands in new rows invalidates them.
"""

from __future__ import annotations

import json

import pandas as pd
import streamlit as st

from .services import Services

__all__ = ["zoo_checkpoint_table", "zoo_checkpoints"]


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
