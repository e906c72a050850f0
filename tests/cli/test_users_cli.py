"""`zooscope users ...`, `zooscope serve --team` refusing to start without accounts, --owner recorded."""

import io
import sys

import pytest

import store
from engine import cli
from engine.auth import load_users, verify_password
from engine.cli import main


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch, tmp_path):
    for var in ("ZOOSCOPE_CONFIG", "ZOOSCOPE_AUTH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.streamlit/secrets.toml
    monkeypatch.chdir(tmp_path)


def _stdin(monkeypatch, text):
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))


def test_add_ls_set_role_passwd_rm(tmp_path, monkeypatch, capsys):
    s = str(tmp_path / "store")
    _stdin(monkeypatch, "correct horse\n")
    assert main(["--store", s, "users", "add", "alice", "--role", "editor", "--password-stdin"]) == 0
    assert main(["--store", s, "users", "add", "bob@example.org", "--role", "admin", "--oidc"]) == 0
    users = load_users(tmp_path / "store" / "users.toml")
    assert users["alice"].role == "editor" and verify_password("correct horse", users["alice"].password)
    assert users["bob@example.org"].password is None
    capsys.readouterr()
    assert main(["--store", s, "users", "ls"]) == 0
    out = capsys.readouterr().out
    assert "alice" in out and "editor" in out and "oidc (no password)" in out
    assert main(["--store", s, "users", "set-role", "alice", "viewer"]) == 0
    _stdin(monkeypatch, "battery staple\n")
    assert main(["--store", s, "users", "passwd", "alice", "--password-stdin"]) == 0
    users = load_users(tmp_path / "store" / "users.toml")
    assert users["alice"].role == "viewer" and verify_password("battery staple", users["alice"].password)
    assert main(["--store", s, "users", "rm", "bob@example.org"]) == 0
    assert list(load_users(tmp_path / "store" / "users.toml")) == ["alice"]


@pytest.mark.parametrize("argv, stdin, message", [
    (["users", "add", "x", "--password-stdin"], "short\n", "at least 8 characters; got 5"),
    (["users", "add", "zooscope", "--oidc"], "", "reserved"),
    (["users", "rm", "nobody"], "", "no user 'nobody'"),
    (["users", "set-role", "nobody", "admin"], "", "no user 'nobody'"),
])
def test_user_errors_are_explained(tmp_path, monkeypatch, capsys, argv, stdin, message):
    _stdin(monkeypatch, stdin)
    assert main(["--store", str(tmp_path / "store"), *argv]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "store" / "users.toml").exists()


def test_adding_an_existing_user_is_refused(tmp_path, capsys):
    s = str(tmp_path / "store")
    assert main(["--store", s, "users", "add", "ann", "--oidc"]) == 0
    assert main(["--store", s, "users", "add", "ann", "--oidc"]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.fixture
def launched(monkeypatch):
    """Capture the server command instead of starting it."""
    calls = []
    monkeypatch.setattr(cli.subprocess, "call", lambda cmd, env: calls.append((cmd, env)) or 0)
    return calls


@pytest.mark.parametrize("argv", [["serve", "--team"], ["serve", "--address", "0.0.0.0"]])
def test_team_serve_refuses_to_start_without_accounts(tmp_path, capsys, launched, argv):
    s = str(tmp_path / "store")
    assert main(["--store", s, *argv]) == 2
    err = capsys.readouterr().err
    assert "has no account with a password" in err and "zooscope --store" in err and "users add NAME" in err
    assert launched == []


def test_team_serve_turns_sign_in_on(tmp_path, monkeypatch, launched):
    s = str(tmp_path / "store")
    _stdin(monkeypatch, "correct horse\n")
    assert main(["--store", s, "users", "add", "ada", "--role", "admin", "--password-stdin"]) == 0
    assert main(["--store", s, "serve", "--team", "--address", "0.0.0.0"]) == 0
    (cmd, env), = launched
    assert env["ZOOSCOPE_AUTH"] == "password" and env["ZOOSCOPE_TEAM"] == "1" and "0.0.0.0" in cmd


def test_team_serve_uses_oidc_when_secrets_have_an_auth_section(tmp_path, launched):
    (tmp_path / ".streamlit").mkdir()
    (tmp_path / ".streamlit" / "secrets.toml").write_text('[auth]\nredirect_uri = "https://x/oauth2callback"\n')
    assert main(["--store", str(tmp_path / "store"), "serve", "--team"]) == 0
    assert launched[0][1]["ZOOSCOPE_AUTH"] == "oidc"


def test_local_serve_keeps_sign_in_off(tmp_path, launched):
    assert main(["--store", str(tmp_path / "store"), "serve"]) == 0
    assert launched[0][1]["ZOOSCOPE_AUTH"] == "off"


def test_cli_import_records_owner_and_checks_it_when_a_mode_is_set(tmp_path, monkeypatch, capsys):
    from test_cli import _weights

    s = str(tmp_path / "store")
    w = str(_weights(tmp_path, 16))
    args = ["--store", s, "import", w, "--arch", "mlp", "--width", "16", "--dataset", "moons"]
    assert main([*args, "--owner", "nina", "--zoo", "a"]) == 0
    monkeypatch.setenv("ZOOSCOPE_AUTH", "password")
    assert main(["--store", s, "users", "add", "val", "--oidc"]) == 0  # a viewer
    assert main([*args, "--owner", "val", "--zoo", "b"]) == 2
    assert "'val' may not import checkpoints" in capsys.readouterr().err
    with store.open_store(s, owner=False) as st:
        assert st.list_runs(st.get_zoo("a")["zoo_id"])["owner"].tolist() == ["nina"]
        assert "b" not in st.list_zoos()["name"].tolist()
