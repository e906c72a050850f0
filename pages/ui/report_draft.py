"""The "Add to report" button any page puts under a figure, and the draft it fills.

The draft lives in the store (so it survives a reload and ``zooscope report --from-draft``
can export it) and its latest copy in ``st.session_state["report_draft"]``. Its name is
``st.session_state["report_draft_name"]`` (``?draft=`` in the URL), the user name by default.

With sign-in on, a draft belongs to its author: anyone may open and copy it, only its owner may
change it. ``DraftBook`` checks that where the draft is written; the pages only say so.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

import streamlit as st

from engine.auth import AccessPolicy
from engine.report import DraftBook, DraftNotYours, ReportDraft, ReportItem, figure_item, table_item

from .services import Services, current_user, get_services
from .text import literal

__all__ = [
    "DRAFT_KEY", "draft_book", "draft_name", "load_draft", "pin_figure", "pin_table", "set_draft_name", "show_figure",
]

DRAFT_KEY = "report_draft_name"
_COPY_KEY = "report_draft"


def draft_name() -> str:
    """The name of the draft this session pins to."""
    if DRAFT_KEY not in st.session_state:
        st.session_state[DRAFT_KEY] = (st.query_params.get("draft") or current_user()).strip() or "draft"
    return st.session_state[DRAFT_KEY]


def set_draft_name(name: str) -> None:
    st.session_state[DRAFT_KEY] = name.strip() or current_user()
    st.query_params["draft"] = st.session_state[DRAFT_KEY]


def _is_account(access: AccessPolicy, name: str) -> bool:
    """Whether ``name`` is an account's sign-in name (its default draft's name)."""
    users = access.users()
    if access.mode == "oidc":
        return name.casefold() in {u.casefold() for u in users}
    return name in users


def draft_book(svc: Services) -> DraftBook:
    """This session's view of the store's drafts (pinned payloads cached after the first read).

    With sign-in on, drafts belong to their authors and a new draft named after an account is that
    account's; with it off everyone is the one local user.
    """
    books = st.session_state.setdefault("_report_books", {})
    book = books.get(id(svc.store))
    if book is None or book.store is not svc.store:
        access = svc.access
        book = books[id(svc.store)] = DraftBook(svc.store, owners=access.enabled,
                                                reserved=lambda name: _is_account(access, name))
    return book


def load_draft(svc: Services) -> ReportDraft:
    """The newest saved state of this session's draft, also kept in ``st.session_state``."""
    draft = draft_book(svc).load(draft_name())
    st.session_state[_COPY_KEY] = draft
    return draft


def _page() -> str | None:
    try:
        path = urlparse(st.context.url or "").path.strip("/")
    except Exception:  # noqa: BLE001 - no request context (bare mode, tests): no page name
        return None
    return path.rsplit("/", 1)[-1] or "zoo"


def pin_figure(fig: Any, *, title: str, params: dict, checkpoint_ids: list[str] | None = None, key: str,
               run_ids: list[str] | None = None, probe_keys: list[str] | None = None, source: str | None = None,
               container: Any = st) -> bool:
    """A small "Add to report" button; a click pins ``fig`` to the session's report draft.

    Parameters
    ----------
    fig : plotly Figure
        Exactly what the page shows; it is stored as Plotly JSON.
    title : str
        The figure's title in the report (editable later on the Reports page).
    params : dict
        The settings that produced the figure (probe parameters, selections), JSON-able.
    checkpoint_ids, run_ids, probe_keys : list of str, optional
        Provenance: the report lists these with their runs, zoos, configs and probe parameters
        (``probe_keys``: ``ProbeStatus.key`` of the probe results drawn).
    key : str
        Unique on the page (the button's key is ``pin_<key>``).
    source : str, optional
        Where it was pinned from; default: the page's URL path.
    container : optional
        Where to draw the button (a column, say); default: the main area.

    Returns
    -------
    bool
        True on the run where the figure was added.
    """
    return _pin_button(lambda who: figure_item(
        fig, title=title, params=params, checkpoint_ids=checkpoint_ids, run_ids=run_ids, probe_keys=probe_keys,
        source=source or _page(), pinned_by=who), key=key, what="figure", container=container)


def pin_table(df: Any, *, title: str, params: dict, checkpoint_ids: list[str] | None = None, key: str,
              run_ids: list[str] | None = None, source: str | None = None, container: Any = st) -> bool:
    """Like :func:`pin_figure` for a table (a pandas DataFrame; at most 500 rows are kept)."""
    return _pin_button(lambda who: table_item(
        df, title=title, params=params, checkpoint_ids=checkpoint_ids, run_ids=run_ids, source=source or _page(),
        pinned_by=who), key=key, what="table", container=container)


def _pin_button(make: Callable[[str], ReportItem], *, key: str, what: str, container: Any) -> bool:
    name = draft_name()
    shown = literal(name)
    if not container.button("Add to report", key=f"pin_{key}", icon=":material/push_pin:", type="tertiary",
                            help=f"Pin this {what}, its settings and its checkpoints to the report draft "
                                 f"'{shown}' (Reports page)"):
        return False
    svc = get_services()
    who = current_user()
    try:
        draft, added = draft_book(svc).pin(name, make(who), author=who)
    except DraftNotYours as exc:
        st.toast(f"Not added: {exc}.", icon=":material/lock:")
        return False
    st.session_state[_COPY_KEY] = draft
    if added:
        st.toast(f"Added to the report draft '{shown}' ({len(draft.items)} item{'s' * (len(draft.items) != 1)}); "
                 "arrange and export it on the Reports page.", icon=":material/push_pin:")
    else:
        st.toast(f"This {what}, with these settings, is already in the draft '{shown}'.", icon=":material/info:")
    return added


def show_figure(fig: Any, *, key: str, title: str, params: dict, checkpoint_ids: list[str] | None = None,
                run_ids: list[str] | None = None, probe_keys: list[str] | None = None, container: Any = st,
                **chart_kw: Any) -> Any:
    """``st.plotly_chart`` plus its "Add to report" button; returns the chart's selection event."""
    event = container.plotly_chart(fig, key=key, **chart_kw)
    pin_figure(fig, title=title, params=params, checkpoint_ids=checkpoint_ids, run_ids=run_ids,
               probe_keys=probe_keys, key=key, container=container)
    return event
