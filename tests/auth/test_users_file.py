import os

import pytest

from engine.auth import User, UsersFileError, hash_password, load_users, save_users

HASH = hash_password("pw", n=16, r=1, p=1)


def test_missing_file_means_no_accounts(tmp_path):
    assert load_users(tmp_path / "users.toml") == {}


def test_save_then_load_round_trips_odd_names(tmp_path):
    path = tmp_path / "users.toml"
    users = {u.name: u for u in [User("alice", "editor", HASH), User("bob@example.org", "admin"),
                                 User('<script>"x"\\ é', "viewer", HASH)]}
    save_users(path, users)
    assert load_users(path) == users
    assert oct(os.stat(path).st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir()] == ["users.toml"]  # no temporary file left behind


@pytest.mark.parametrize("text, match", [
    ("[users.alice\nrole=", "is not valid TOML"),
    ('[users.alice]\nrole = "owner"\n', r"entry \[users\.\"alice\"\]: role must be one of viewer, editor, admin; "
                                        r"got 'owner'"),
    ('[users.alice]\npassword = "x"\n', r"\[users\.\"alice\"\]: role must be one of"),
    ('[users.bob]\nrole = "viewer"\npassword = "hunter2"\n', r"\[users\.\"bob\"\]: a password hash must look like"),
    ('[users.bob]\nrole = "viewer"\nemail = "b@x"\n', r"\[users\.\"bob\"\]: unknown keys \['email'\]"),
    ('[users]\nbob = "viewer"\n', r"\[users\.\"bob\"\]: must be a table"),
    ('[users.zooscope]\nrole = "admin"\n', "reserved"),
    ('[people.bob]\nrole = "admin"\n', r"unknown top-level keys \['people'\]"),
])
def test_bad_entries_name_the_file_and_the_entry(tmp_path, text, match):
    path = tmp_path / "users.toml"
    path.write_text(text)
    with pytest.raises(UsersFileError, match=match) as info:
        load_users(path)
    assert str(path) in str(info.value)


def test_save_refuses_bad_names_and_roles(tmp_path):
    with pytest.raises(ValueError, match="printable"):
        save_users(tmp_path / "u.toml", {"a\nb": User("a\nb", "viewer")})
    with pytest.raises(ValueError, match="role must be one of"):
        save_users(tmp_path / "u.toml", {"a": User("a", "root")})
    assert not (tmp_path / "u.toml").exists()
