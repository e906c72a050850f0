"""Report drafts kept in the store's ``report`` table, beside the finished reports.

The table has one kind of row, so drafts live there under reserved id prefixes:

- ``pin:<item_id>`` — one pinned figure or table, content-addressed and written once;
- ``draft:<time_ns>-<random>`` — one saved state of a draft (title = the draft's name):
  its title, notes and ordered item ids with their edited titles and notes. Every save
  appends a row, so a draft's history is kept and two sessions never overwrite each
  other's rows; the newest row is the draft.

Finished reports have plain ids and are what :func:`list_stored_reports` lists.

A draft belongs to its author: the author of its first saved state (or, for a new draft
named after an account, that account). Anyone may read and copy it; only its owner may
save it, which :meth:`DraftBook.save` and :meth:`DraftBook.pin` check before they write.
"""

from __future__ import annotations

import time
import uuid
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.auth import PermissionDenied

from .model import ReportDraft, ReportItem, utc_stamp

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DRAFT_PREFIX", "PIN_PREFIX", "DraftBook", "DraftNotYours", "is_stored_report", "list_stored_reports"]

DRAFT_PREFIX = "draft:"
PIN_PREFIX = "pin:"
_DRAFT_FORMAT = 1


def is_stored_report(report_id: str) -> bool:
    """True for a finished report's id, False for a draft's rows."""
    return not str(report_id).startswith((DRAFT_PREFIX, PIN_PREFIX))


def list_stored_reports(store: Any) -> pd.DataFrame:
    """Finished reports, newest first: ``report_id, title, author, created_at``."""
    reports = store.list_reports()
    return reports[reports["report_id"].map(is_stored_report)].reset_index(drop=True)


class DraftNotYours(PermissionDenied):
    """Someone tried to change a report draft that belongs to someone else."""


def _shown(name: object) -> str:
    text = repr(name)
    return text if len(text) <= 80 else text[:77] + "..."


class DraftBook:
    """The drafts of one store: list, load, save and pin.

    Pinned payloads never change once written, so they are cached here after the first read.

    Parameters
    ----------
    store : store.Store
        An open store; saving needs it opened as owner.
    owners : bool
        Whether a draft belongs to its author (default). The dashboard turns it off when
        sign-in is off: everyone is then the same local user.
    reserved : callable, optional
        ``reserved(name)`` is True when ``name`` is an account's name: a new draft with that
        name belongs to that account, so nobody else can take a user's default draft.
    """

    def __init__(self, store: Any, *, owners: bool = True, reserved: Callable[[str], bool] | None = None):
        self.store = store
        self.owners = owners
        self.reserved = reserved
        self._pins: dict[str, ReportItem] = {}

    def list(self) -> pd.DataFrame:
        """One row per draft (its newest state): ``name, author, updated_at``, newest first."""
        rows = self.store.list_reports()
        rows = rows[rows["report_id"].str.startswith(DRAFT_PREFIX)].sort_values("report_id", ascending=False)
        latest = rows.drop_duplicates("title")
        return latest.rename(columns={"title": "name", "created_at": "updated_at"})[
            ["name", "author", "updated_at"]].reset_index(drop=True)

    def load(self, name: str) -> ReportDraft:
        """The newest saved state of draft ``name`` (an empty draft if it was never saved)."""
        name = name.strip()
        state = self._latest_state(name)
        if state is None:
            return ReportDraft(name=name)
        items = []
        for ref in state.get("items", []):
            pin = self._pin(ref["item_id"])
            if pin is None:
                warnings.warn(f"draft {name!r}: pinned item {ref['item_id']!r} is missing from the store; "
                              "it is left out", stacklevel=2)
                continue
            items.append(pin.model_copy(update={"title": ref.get("title", pin.title), "note": ref.get("note", "")}))
        return ReportDraft(name=state["name"], title=state.get("title", ""), notes=state.get("notes", ""), items=items)

    def owner(self, name: str) -> str | None:
        """Who draft ``name`` belongs to: the author of its first saved state (or, for a draft not saved
        yet, the account it is named after when ``reserved`` says so); None when nobody owns it."""
        name = name.strip()
        rows = self.store.list_reports()
        rows = rows[rows["report_id"].str.startswith(DRAFT_PREFIX) & (rows["title"] == name) & rows["author"].notna()]
        if not rows.empty:
            return str(rows.sort_values("report_id")["author"].iloc[0])
        if self.reserved is not None and self.reserved(name):
            return name
        return None

    def may_write(self, name: str, author: str | None) -> bool:
        """Whether ``author`` may change draft ``name`` (its owner, or anyone when it has none)."""
        if not self.owners:
            return True
        owner = self.owner(name)
        return owner is None or owner == author

    def check_writable(self, name: str, author: str | None) -> None:
        """Raise :class:`DraftNotYours` unless ``author`` may change draft ``name``."""
        if self.may_write(name, author):
            return
        who = _shown(author) if author else "an anonymous user"
        raise DraftNotYours(
            f"the report draft {_shown(name.strip())} belongs to {_shown(self.owner(name))}; {who} may read and copy "
            f"it but not change it. Copy it into a draft of your own (Reports page: 'Copy to my draft'), or pick "
            f"another draft name")

    def save(self, draft: ReportDraft, *, author: str | None = None) -> None:
        """Record ``draft`` as the newest state of its name (pinned payloads are written once).

        Raises
        ------
        DraftNotYours
            The draft belongs to someone other than ``author``; nothing is written.
        """
        self.check_writable(draft.name, author)
        for item in draft.items:
            self._put_pin(item, author)
        body = {"draft_format": _DRAFT_FORMAT, "name": draft.name, "title": draft.title, "notes": draft.notes,
                "saved_at": utc_stamp(),
                "items": [{"item_id": i.item_id, "title": i.title, "note": i.note} for i in draft.items]}
        report_id = f"{DRAFT_PREFIX}{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"  # sorts by time
        self.store.add_report(draft.name, body, author=author, report_id=report_id)

    def pin(self, name: str, item: ReportItem, *, author: str | None = None) -> tuple[ReportDraft, bool]:
        """Append ``item`` to the newest state of draft ``name`` and save it.

        Returns the draft and whether the item was added (False when the same
        figure with the same parameters and ids is already in the draft). Raises
        :class:`DraftNotYours` as :meth:`save` does, also when the item is there already.
        """
        self.check_writable(name, author)
        draft = self.load(name)
        if any(existing.item_id == item.item_id for existing in draft.items):
            return draft, False
        draft.items.append(item)
        self.save(draft, author=author)
        return draft, True

    # -- rows ------------------------------------------------------------------------------------

    def _latest_state(self, name: str) -> dict[str, Any] | None:
        rows = self.store.list_reports()
        rows = rows[rows["report_id"].str.startswith(DRAFT_PREFIX) & (rows["title"] == name)]
        if rows.empty:
            return None
        return self.store.get_report(rows["report_id"].max())["body"]

    def _pin(self, item_id: str) -> ReportItem | None:
        if item_id not in self._pins:
            from store import NotFoundError

            try:
                body = self.store.get_report(PIN_PREFIX + item_id)["body"]
            except NotFoundError:
                return None
            self._pins[item_id] = ReportItem.model_validate(body["item"])
        return self._pins[item_id]

    def _put_pin(self, item: ReportItem, author: str | None) -> None:
        if item.item_id in self._pins:
            return
        try:
            self.store.add_report(item.title or item.kind, {"item": item.model_dump(mode="json")}, author=author,
                                  report_id=PIN_PREFIX + item.item_id)
        except ValueError:
            if self._pin(item.item_id) is None:  # not a duplicate key: a real failure
                raise
        self._pins[item.item_id] = item
