"""Sign-in on the dashboard: the gate, wrong passwords, what viewers and editors see, escaped names."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

import store
from app_conftest import APP, release_services
from engine.auth import User, hash_password, save_users
from engine.jobs import LocalExecutor
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
    from app_conftest import current_services

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
