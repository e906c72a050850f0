"""The store, its dispatcher and workers, held for the life of the server process; cached catalog reads.

The owner services are a process resident (``engine.jobs.resident``), not an ``st.cache_resource``:
Streamlit's clear-cache message, which any client can send, clears page data only and never
stops a job or releases the store. Who uses a session is ``session.py``; the pages' helpers
``current_user``, ``current_role`` and ``may`` are here because they need the services.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import streamlit as st

import store
from engine.auth import AccessPolicy, access_policy, oidc_configured, resolve_auth_mode
from engine.jobs import Dispatcher, resident

from .session import SESSION_USER, session_user
from .signin import sign_in_gate
from .text import literal

__all__ = ["Services", "get_services", "cached_jobs", "cached_metrics", "cached_runs", "cached_zoos",
           "current_role", "current_user", "may"]

__all__ = ["METRICS_TABLES", "RUNS_TABLES", "SESSION_USER", "ZOOS_TABLES", "Services", "close_services",
           "get_services", "cached_jobs", "cached_metrics", "cached_runs", "cached_zoos", "current_role",
           "current_user", "may", "session_user"]


@dataclass
class Services:
    store: store.Store
    dispatcher: Dispatcher
    access: AccessPolicy

    @property
    def generation(self) -> int:
        """Changes whenever the catalog changes (any table): for what follows jobs and probes."""
        return self.dispatcher.generation

    def version(self, *tables: str) -> tuple:
        """The key of a cached read of ``tables``: this store, and how often each table was written.

        It moves only when one of ``tables`` changes (:meth:`store.Store.data_version`), so the
        metric rows a training job hands in every second or so leave the runs and zoos tables'
        caches warm.
        """
        return (str(self.store.path), *self.store.data_version(*tables))


def _release(svc: Services) -> None:
    # Called once, when the server process stops (or a test closes the services): stop the
    # workers and close the store, so no worker is orphaned and the owner lock is free.
    if svc.store.closed:
        return
    svc.dispatcher.stop(kill_workers=True)
    svc.store.close()


def _open(path: str) -> Services:
    from engine.auth import SYSTEM_USER
    from engine.settings import load_settings

    settings = load_settings(Path(path))
    access = access_policy(settings, _auth_mode(settings), Path(path))
    st_ = store.open_store(Path(path), owner=True)
    disp = Dispatcher(st_, access=access, settings=settings)
    if os.environ.get("ZOOSCOPE_WARM_UMAP") == "1":  # set by `zooscope serve`: compile UMAP before anyone waits
        disp.submit("warm_umap", {}, owner=SYSTEM_USER)
    disp.start_background(interval_s=0.5)
    return Services(st_, disp, access)


def _auth_mode(settings) -> str:
    """Sign-in off, password or OIDC (``[auth] mode``; "auto" decided by the address and ``--team``).

    ``zooscope serve`` resolves "auto" itself and passes the result in ``$ZOOSCOPE_AUTH``. A server
    started some other way without an address (``streamlit run app.py``, tests) counts as local.
    """
    address = st.get_option("server.address") or "localhost"
    return resolve_auth_mode(settings.auth.mode, address=address, team=os.environ.get("ZOOSCOPE_TEAM") == "1",
                             oidc=oidc_configured())


def store_path() -> Path:
    return store.resolve_store_path(None)


def get_services() -> Services:
    """The owner services, or a plain explanation (and stop) when another process owns the store."""
    path = store_path()
    key = str(path.resolve())
    try:
        return resident.hold(f"owner-services:{key}", lambda: _open(key), _release)
    except store.StoreBusyError as exc:
        st.error(f"**This dashboard cannot open its store.** {literal(exc)}")
        st.markdown(
            "Only one process may own a store. Stop the other process (or open its dashboard), "
            "or start this one on another store: `ZOOSCOPE_STORE=/path/to/other make run`."
        )
        st.stop()
    except store.StoreError as exc:
        st.error(f"**The store at {literal(path)} cannot be used.** {literal(exc)}")
        st.stop()
    except ValueError as exc:  # a bad zooscope.toml or users file (ConfigError)
        st.error(f"**The server settings cannot be used.** {literal(exc)}")
        st.stop()
    raise AssertionError("unreachable")


def close_services() -> None:
    """Stop the dispatchers and workers and close the stores this process holds (server shutdown, tests)."""
    resident.close_all()


# The catalog tables each cached read depends on.
ZOOS_TABLES = ("zoo", "run")  # list_zoos: zoo rows and their runs' statuses
RUNS_TABLES = ("run", "checkpoint", "metric.probe")  # runs_table: runs, last checkpoints, probe metrics
METRICS_TABLES = ("metric",)


def cached_zoos(svc: Services) -> pd.DataFrame:
    """Every zoo with its run counts, read again only when a zoo or run row changed."""
    return _zoos(svc, svc.version(*ZOOS_TABLES))


def cached_runs(svc: Services, zoo_id: str | None) -> pd.DataFrame:
    """:meth:`store.Store.runs_table`, read again only when a run, checkpoint or probe metric changed."""
    return _runs(svc, zoo_id, svc.version(*RUNS_TABLES))


def cached_metrics(svc: Services, run_ids: tuple[str, ...]) -> pd.DataFrame:
    """The runs' metrics, read again only when metric rows were written."""
    return _metrics(svc, tuple(run_ids), svc.version(*METRICS_TABLES))


@st.cache_data(show_spinner=False, max_entries=64)
def _zoos(_svc: Services, version: tuple) -> pd.DataFrame:
    return _svc.store.list_zoos()


@st.cache_data(show_spinner=False, max_entries=64)
def _runs(_svc: Services, zoo_id: str | None, version: tuple) -> pd.DataFrame:
    return _svc.store.runs_table(zoo_id)


@st.cache_data(show_spinner=False, max_entries=64)
def _metrics(_svc: Services, run_ids: tuple[str, ...], version: tuple) -> pd.DataFrame:
    return _svc.store.metrics(list(run_ids))


def cached_jobs(svc: Services) -> pd.DataFrame:
    return svc.store.list_jobs()


def demo_config() -> Path:
    return Path(__file__).resolve().parents[2] / "configs" / "demo.toml"


def current_user() -> str:
    """Who is using this session: the signed-in user, or ``$USER`` when sign-in is off.

    With sign-in on and nobody signed in, shows the sign-in form and stops the script.
    """
    svc = get_services()
    user = session_user(svc.access)
    if user is None:
        sign_in_gate(svc.access)
        st.stop()
    return user


def current_role() -> str:
    """The role of :func:`current_user` (``"admin"`` when sign-in is off)."""
    return get_services().access.role_of(current_user()) or "viewer"


def may(action: str) -> bool:
    """Whether the current user's role allows ``action`` (see ``engine.auth.ACTIONS``); the job layer checks again."""
    return get_services().access.can(current_user(), action)
