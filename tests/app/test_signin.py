"""Sign-in on the dashboard: the gate, wrong passwords and their back-off, what viewers and editors see, escaped
names, and report drafts that only their author may change."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import streamlit as st
from app_conftest import APP, current_services, release_services
from streamlit.testing.v1 import AppTest

import store
from engine.auth import User, hash_password, save_users
from engine.jobs import LocalExecutor
from engine.report import DraftBook, ReportDraft, build_report, save_report, table_item
from pages.ui.text import literal

PASSWORD = "correct horse"
SCRIPT_NAME = "<script>alert(1)</script>"


class _NoSlots(LocalExecutor):
    """Jobs stay queued: a test never trains by accident."""

    @property
    def free_slots(self) -> int:
        return 0


@pytest.fixture
def team_app(monkeypatch, tmp_path):
    """``team_app() -> AppTest`` of app.py with password sign-in on and four accounts, not yet run."""
    path = tmp_path / "store"
    hashed = hash_password(PASSWORD, n=16, r=1, p=1)
    save_users(path / "users.toml", {n: User(n, r, hashed) for n, r in
                                     [("val", "viewer"), ("ed", "editor"), ("ada", "admin"),
                                      (SCRIPT_NAME, "editor")]})
    for var in ("ZOOSCOPE_CONFIG", "ZOOSCOPE_WORKERS", "ZOOSCOPE_TEAM", "ZOOSCOPE_WARM_UMAP"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ZOOSCOPE_AUTH", "password")
    monkeypatch.setenv(store.STORE_ENV_VAR, str(path))
    monkeypatch.setattr("engine.jobs.dispatcher.make_executor", lambda p, settings=None: _NoSlots(p))
    release_services()

    def make() -> AppTest:
        return AppTest.from_file(str(APP), default_timeout=60)

    yield make
    release_services()


def _sign_in(at: AppTest, name: str, password: str = PASSWORD) -> AppTest:
    at.text_input(key="signin_name").input(name)
    at.text_input(key="signin_password").input(password)
    at.button(key="FormSubmitter:sign_in-Sign in").click()
    return at.run()


def _texts(at: AppTest) -> list[str]:
    return [e.value for kind in ("markdown", "caption", "title", "info", "error", "subheader")
            for e in getattr(at, kind) if isinstance(e.value, str)]


def test_with_sign_in_on_the_app_shows_the_sign_in_form_and_nothing_else(team_app):
    at = team_app().run()
    assert not at.exception
    assert [t.value for t in at.title] == ["Sign in to Zooscope"]
    assert [w.label for w in at.text_input] == ["User name", "Password"]
    assert not at.sidebar.caption and not at.sidebar.button
    assert not at.subheader and not at.dataframe and not at.tabs


@pytest.mark.parametrize("name, password", [("ed", "wrong password"), ("nobody", PASSWORD), ("", "")])
def test_a_wrong_password_or_unknown_name_gets_one_plain_error(team_app, name, password):
    at = _sign_in(team_app().run(), name, password)
    assert [e.value for e in at.error] == ["Wrong user name or password."]
    assert [t.value for t in at.title] == ["Sign in to Zooscope"]


def test_a_viewer_sees_no_launch_or_import_buttons(team_app):
    at = _sign_in(team_app().run(), "val")
    assert not at.exception and "Welcome to Zooscope" in [t.value for t in at.title]
    assert "train_demo" not in {b.key for b in at.button}
    assert any("editor role" in i.value for i in at.info)
    queue = [b for b in at.button if b.label == "Queue training"]
    assert queue and all(b.disabled for b in queue)
    assert any("Signed in as **val** · viewer" in c.value for c in at.sidebar.caption)


def test_an_editor_can_launch(team_app):
    at = _sign_in(team_app().run(), "ed")
    assert "train_demo" in {b.key for b in at.button}
    assert not any(b.disabled for b in at.button if b.label == "Queue training")
    at.button(key="train_demo").click().run()
    jobs = current_services().store.list_jobs()
    assert jobs["owner"].tolist() == ["ed"] and jobs["status"].tolist() == ["queued"]
    assert any("**Your train job** — position 1 in the queue" in c.value for c in at.sidebar.caption)


def test_sign_out_returns_to_the_form(team_app):
    at = _sign_in(team_app().run(), "ada")
    at.sidebar.button(key="sign_out").click().run()
    assert "zooscope_user" not in at.session_state
    assert "Sign in to Zooscope" in [t.value for t in at.title]  # (AppTest keeps the last run's stale elements)
    assert not any("Signed in as" in c.value for c in at.sidebar.caption)


def test_a_script_tag_user_name_is_shown_as_text(team_app):
    at = _sign_in(team_app().run(), SCRIPT_NAME)
    at.button(key="train_demo").click().run()
    shown = [c.value for c in at.sidebar.caption]
    assert any(f"Signed in as **{literal(SCRIPT_NAME)}** · editor" in c for c in shown)
    assert not any("<script>" in text for text in _texts(at) + shown)


# -- back-off after failed sign-ins ------------------------------------------------------------------------

class _Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def _errors(at: AppTest) -> list[str]:
    return [e.value for e in at.error]


def test_failed_sign_ins_lock_the_account_until_the_lock_passes(team_app):
    at = team_app().run()
    clock = current_services().access.backoff.clock = _Clock()  # the server's policy: no waiting in the test
    assert _errors(_sign_in(at, "ed", "wrong password")) == ["Wrong user name or password."]
    assert _errors(_sign_in(at, "ed", "wrong again")) == ["Too many failed sign-in attempts: try again in 1 s."]
    at = _sign_in(at, "ed")  # the right password, while the lock holds
    assert _errors(at) == ["Too many failed sign-in attempts: try again in 1 s."]
    assert "zooscope_user" not in at.session_state
    clock.now += 1.0
    at = _sign_in(at, "ed")
    assert "Welcome to Zooscope" in [t.value for t in at.title] and at.session_state["zooscope_user"] == "ed"
    at.sidebar.button(key="sign_out").click().run()
    # the success reset the count: one mistake locks for 1 s again, not for the 4 s a third failure would
    assert _errors(_sign_in(at, "ed", "wrong password")) == ["Wrong user name or password."]
    assert _errors(_sign_in(at, "ed", "wrong again")) == ["Too many failed sign-in attempts: try again in 1 s."]


def test_the_lock_survives_a_clear_cache(team_app):
    """The back-off lives with the owner services, which Streamlit's clear-cache does not reach."""
    at = team_app().run()
    current_services().access.backoff.clock = _Clock()
    _sign_in(at, "ed", "wrong password")
    st.cache_resource.clear()
    st.cache_data.clear()
    assert _errors(_sign_in(at, "ed")) == ["Too many failed sign-in attempts: try again in 1 s."]


# -- report drafts belong to their author ----------------------------------------------------------------------

def test_a_viewer_reads_and_copies_an_admins_draft_but_cannot_change_it(team_app):
    path = os.environ[store.STORE_ENV_VAR]
    with store.open_store(path) as st_:
        book = DraftBook(st_)
        book.pin("ada", table_item(pd.DataFrame({"run": ["a"], "acc": [0.5]}), title="Ada's table", params={}),
                 author="ada")
        book.save(book.load("ada").model_copy(update={"title": "Ada's report", "notes": "Ada's notes"}),
                  author="ada")
        old = ReportDraft(name="old", title="An old report", items=book.load("ada").items)
        save_report(st_, build_report(st_, old, author="ada"))
    at = team_app()
    at.query_params["draft"] = "ada"
    at = _sign_in(at.run(), "val")
    at.switch_page("pages/reports.py").run()
    assert not at.exception, at.exception
    assert any("This draft belongs to **ada**: you can read and copy it, not change it." in i.value for i in at.info)
    assert at.text_input(key="report_title").value == "Ada's report"  # read
    assert at.text_input(key="report_title").disabled and at.text_area(key="report_notes").disabled
    # Streamlit drops changes to disabled widgets; an enabled button that writes the draft is refused where the
    # draft is written ("Reopen as the current draft" on the Stored reports tab replaces the draft's items).
    at.button(key="report_reopen").click().run()
    assert _errors(at) == ["Not reopened: the report draft 'ada' belongs to 'ada'; 'val' may read and copy it but "
                           "not change it. Copy it into a draft of your own (Reports page: 'Copy to my draft'), "
                           "or pick another draft name."]
    book = DraftBook(current_services().store)
    assert (book.load("ada").title, book.load("ada").notes) == ("Ada's report", "Ada's notes")
    at.button(key="report_copy").click().run()
    assert not at.exception, at.exception
    copy = book.load("ada (copy by val)")
    assert book.owner("ada (copy by val)") == "val"
    assert (copy.title, copy.notes, [i.title for i in copy.items]) == ("Ada's report", "Ada's notes", ["Ada's table"])
    assert at.query_params["draft"] == "ada (copy by val)"
    assert not at.text_input(key="report_title").disabled
    at.text_input(key="report_title").input("val's version").run()
    assert book.load("ada (copy by val)").title == "val's version" and book.load("ada").title == "Ada's report"
