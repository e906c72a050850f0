"""Drafts in the store: pins are appended once, edits are kept, drafts survive a new session."""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from report_helpers import XSS, zoo_figures

import store
from engine.report import (
    DRAFT_PREFIX,
    PIN_PREFIX,
    DraftBook,
    DraftNotYours,
    ReportDraft,
    build_report,
    figure_item,
    list_stored_reports,
    save_report,
)


def _pins(st, ids):
    figs = zoo_figures(st, ids["zoo_id"])
    return [figure_item(f, title=f"figure {k}", params={"k": k}, checkpoint_ids=ids["checkpoint_ids"][k:k + 1])
            for k, f in enumerate(figs)]


def test_pinning_appends_once_per_figure_and_settings(small_store):
    st, ids = small_store
    book = DraftBook(st)
    a, b, _ = _pins(st, ids)
    assert book.pin("d", a, author="ann") == (book.load("d"), True)
    draft, added = book.pin("d", figure_item(a.figure, title="same figure, new title", params={"k": 0},
                                             checkpoint_ids=a.checkpoint_ids), author="ann")
    assert not added and [i.item_id for i in draft.items] == [a.item_id]
    draft, added = book.pin("d", figure_item(a.figure, title="other settings", params={"k": 99}), author="ann")
    assert added and len(draft.items) == 2
    assert book.pin("d", b, author="ann")[1] and len(book.load("d").items) == 3


def test_a_draft_survives_a_new_session_and_a_reopened_store(small_store, tmp_path):
    st, ids = small_store
    book = DraftBook(st)
    pins = _pins(st, ids)
    for pin in pins:
        book.pin("mine", pin, author="ann")
    draft = book.load("mine")
    draft.title, draft.notes = f"Title {XSS}", "*notes*"
    draft.items[0].title, draft.items[0].note = "renamed", "a note"
    draft.items.reverse()
    book.save(draft, author="ann")
    st.close()
    with store.open_store(tmp_path / "store", owner=False) as again:
        loaded = DraftBook(again).load("mine")
    assert loaded == draft
    assert [i.figure for i in loaded.items] == [p.figure for p in reversed(pins)]
    assert (loaded.items[-1].title, loaded.items[-1].note) == ("renamed", "a note")


def test_every_save_is_kept_and_the_newest_one_is_the_draft(small_store):
    st, ids = small_store
    book = DraftBook(st)
    pin = _pins(st, ids)[0]
    book.pin("x", pin, author="ann")
    shared = DraftBook(st, owners=False)  # sign-in off: everyone may write every draft
    for title in ("one", "two", "three"):
        shared.save(book.load("x").model_copy(update={"title": title}), author="bob")
    book.pin("y", pin, author="cy")
    rows = st.list_reports()
    assert rows["report_id"].str.startswith(DRAFT_PREFIX).sum() == 5
    assert rows["report_id"].str.startswith(PIN_PREFIX).sum() == 1  # the same figure is stored once
    assert book.load("x").title == "three"
    listed = book.list()
    assert sorted(listed["name"]) == ["x", "y"]
    assert listed.set_index("name").loc["x", "author"] == "bob"
    assert book.load("never saved") == ReportDraft(name="never saved")


def test_someone_elses_draft_can_be_read_and_copied_but_not_written(small_store):
    st, ids = small_store
    book = DraftBook(st)
    a, b, _ = _pins(st, ids)
    book.pin("ada", a, author="ada")
    book.save(book.load("ada").model_copy(update={"title": "Ada's title", "notes": "Ada's notes"}), author="ada")
    rows_before = len(st.list_reports())
    theirs = book.load("ada")  # anyone may read it
    assert (theirs.title, theirs.notes, len(theirs.items)) == ("Ada's title", "Ada's notes", 1)
    assert book.owner("ada") == "ada" and not book.may_write("ada", "val") and book.may_write("ada", "ada")
    refused = "the report draft 'ada' belongs to 'ada'; 'val' may read and copy it but not change it"
    with pytest.raises(DraftNotYours, match=refused):
        book.save(theirs.model_copy(update={"title": "replaced", "notes": ""}), author="val")
    with pytest.raises(DraftNotYours, match=refused):
        book.pin("ada", b, author="val")
    with pytest.raises(DraftNotYours, match="an anonymous user may read and copy it"):
        book.save(theirs, author=None)
    assert isinstance(DraftNotYours("x"), PermissionError)
    assert len(st.list_reports()) == rows_before  # nothing was written
    assert book.load("ada") == theirs
    book.save(theirs.model_copy(update={"name": "val's copy"}), author="val")  # a copy is val's own
    assert book.owner("val's copy") == "val" and book.load("val's copy").items == theirs.items
    book.pin("ada", b, author="ada")  # the owner still writes
    assert len(book.load("ada").items) == 2


def test_a_new_draft_named_after_an_account_is_that_accounts(small_store):
    st, ids = small_store
    book = DraftBook(st, reserved=lambda name: name in {"ada", "val"})
    pin = _pins(st, ids)[0]
    assert book.owner("ada") == "ada" and book.owner("free") is None
    with pytest.raises(DraftNotYours, match="the report draft 'ada' belongs to 'ada'; 'val' may read"):
        book.pin("ada", pin, author="val")
    assert book.list().empty
    book.pin("free", pin, author="val")  # a name nobody has: the first author's
    assert book.owner("free") == "val" and not book.may_write("free", "ada")
    book.pin("ada", pin, author="ada")
    assert book.owner("ada") == "ada"


def test_stored_reports_are_listed_without_the_drafts_rows(small_store):
    st, ids = small_store
    book = DraftBook(st)
    for pin in _pins(st, ids):
        book.pin("d", pin)
    report_id = save_report(st, build_report(st, book.load("d"), author=XSS))
    listed = list_stored_reports(st)
    assert listed["report_id"].tolist() == [report_id]
    assert listed.loc[0, "author"] == XSS and listed.loc[0, "title"] == "Untitled report"
    assert listed.loc[0, "created_at"] is not None


def test_a_draft_needs_a_name_and_an_empty_draft_cannot_be_exported(small_store):
    st, _ = small_store
    with pytest.raises(ValidationError, match="a draft needs a non-blank name"):
        ReportDraft(name="  ")
    with pytest.raises(ValueError, match="draft 'empty' has nothing pinned"):
        build_report(st, ReportDraft(name="empty"), author="ann")
