"""The store and its dispatcher, opened once per server process, and cached catalog reads."""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

import store
from engine.jobs import Dispatcher

__all__ = ["Services", "get_services", "cached_jobs", "cached_metrics", "cached_runs", "cached_zoos"]


@dataclass
class Services:
    store: store.Store
    dispatcher: Dispatcher

    @property
    def generation(self) -> int:
        """Changes whenever the catalog changes: the key that invalidates cached reads."""
        return self.dispatcher.generation


def _release(svc: Services) -> None:
    # Called when the resource cache is cleared (the app menu's "Clear cache", or tests): the
    # next run opens the store again, which needs this process's owner lock to be free.
    if svc.store.closed:
        return
    svc.dispatcher.stop(kill_workers=True)
    svc.store.close()


@st.cache_resource(show_spinner=False, on_release=_release)
def _open(path: str) -> Services:
    st_ = store.open_store(Path(path), owner=True)
    disp = Dispatcher(st_)
    if os.environ.get("ZOOSCOPE_WARM_UMAP") == "1":  # set by `zooscope serve`: compile UMAP before anyone waits
        disp.submit("warm_umap", {}, owner="zooscope")
    disp.start_background(interval_s=0.5)
    svc = Services(st_, disp)
    atexit.register(_release, svc)  # the server stops: stop its workers and close the store, not orphan them
    return svc


def store_path() -> Path:
    return store.resolve_store_path(None)


def get_services() -> Services:
    """The owner services, or a plain explanation (and stop) when another process owns the store."""
    path = store_path()
    try:
        return _open(str(path.resolve()))
    except store.StoreBusyError as exc:
        st.error(f"**This dashboard cannot open its store.** {exc}")
        st.markdown(
            "Only one process may own a store. Stop the other process (or open its dashboard), "
            "or start this one on another store: `ZOOSCOPE_STORE=/path/to/other make run`."
        )
        st.stop()
    except store.StoreError as exc:
        st.error(f"**The store at `{path}` cannot be used.** {exc}")
        st.stop()
    raise AssertionError("unreachable")


@st.cache_data(show_spinner=False, max_entries=64)
def cached_zoos(_svc: Services, generation: int) -> pd.DataFrame:
    return _svc.store.list_zoos()


@st.cache_data(show_spinner=False, max_entries=64)
def cached_runs(_svc: Services, zoo_id: str | None, generation: int) -> pd.DataFrame:
    return _svc.store.runs_table(zoo_id)


@st.cache_data(show_spinner=False, max_entries=64)
def cached_metrics(_svc: Services, run_ids: tuple[str, ...], generation: int) -> pd.DataFrame:
    return _svc.store.metrics(list(run_ids))


def cached_jobs(svc: Services) -> pd.DataFrame:
    return svc.store.list_jobs()


def demo_config() -> Path:
    return Path(__file__).resolve().parents[2] / "configs" / "demo.toml"


def current_user() -> str:
    return os.environ.get("USER", "local")
