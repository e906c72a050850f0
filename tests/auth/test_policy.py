import pytest

from engine.auth import (
    ACTIONS,
    AccessPolicy,
    PermissionDenied,
    User,
    hash_password,
    is_loopback,
    oidc_configured,
    resolve_auth_mode,
    save_users,
)

HASH = hash_password("s3cret", n=16, r=1, p=1)

# action -> (viewer, editor, admin) may do it
TABLE = {
    "browse": (True, True, True),
    "export": (True, True, True),
    "launch": (False, True, True),
    "import": (False, True, True),
    "cancel": (False, True, True),
    "cancel_any": (False, False, True),
    "delete_zoo": (False, False, True),
    "manage_users": (False, False, True),
    "register_dataset": (False, False, True),  # a server path: `zooscope datasets add`
}


@pytest.fixture
def policy(tmp_path):
    path = tmp_path / "users.toml"
    save_users(path, {n: User(n, r, HASH) for n, r in [("val", "viewer"), ("ed", "editor"), ("ada", "admin")]})
    return AccessPolicy("password", path)


def test_the_table_covers_every_action():
    assert set(TABLE) == set(ACTIONS)


@pytest.mark.parametrize("action", sorted(TABLE))
def test_each_role_may_do_what_the_table_says(policy, action):
    for user, allowed in zip(["val", "ed", "ada"], TABLE[action]):
        assert policy.can(user, action) is allowed, (user, action)


def test_refusal_says_who_what_and_which_role(policy):
    with pytest.raises(PermissionDenied, match="user 'val' may not launch jobs: that needs the role 'editor' "
                                               "or higher, and 'val' has the role 'viewer'"):
        policy.require("val", "launch")
    with pytest.raises(PermissionDenied, match="'mallory' has no account"):
        policy.require("mallory", "browse")
    with pytest.raises(PermissionError):  # PermissionDenied is a PermissionError
        policy.require(None, "browse")


def test_unknown_action_is_a_programming_error(policy):
    with pytest.raises(ValueError, match="unknown action 'fly'"):
        policy.can("ada", "fly")


def test_auth_off_makes_everyone_a_local_admin():
    policy = AccessPolicy("off", local_user="me")
    assert not policy.enabled and policy.role_of("anyone") == "admin" and policy.can("x", "manage_users")


def test_the_server_itself_is_admin_but_nobody_can_sign_in_as_it(policy):
    assert policy.role_of("zooscope") == "admin"
    assert policy.authenticate("zooscope", "s3cret") is None


def test_password_sign_in(policy):
    assert policy.authenticate("ed", "s3cret") == "ed"
    assert policy.authenticate("ed", "wrong") is None
    assert policy.authenticate("nobody", "s3cret") is None


def test_users_file_changes_take_effect_without_restart(policy):
    assert policy.role_of("val") == "viewer"
    save_users(policy.users_file, {"val": User("val", "editor", HASH)})
    assert policy.role_of("val") == "editor" and policy.role_of("ed") is None


def test_oidc_users_by_email_with_a_default_role(tmp_path):
    path = tmp_path / "users.toml"
    save_users(path, {"Boss@Example.org": User("Boss@Example.org", "admin")})
    policy = AccessPolicy("oidc", path, default_role="viewer")
    assert policy.role_of("boss@example.org") == "admin"
    assert policy.role_of("someone@example.org") == "viewer"
    with pytest.raises(ValueError, match="password sign-in is not enabled"):
        policy.authenticate("boss@example.org", "x")


@pytest.mark.parametrize("address, loop", [("localhost", True), ("127.0.0.1", True), ("::1", True),
                                           ("[::1]", True), ("0.0.0.0", False), ("10.1.2.3", False),
                                           ("zoo.example.org", False), ("", False), (None, False)])
def test_loopback_addresses(address, loop):
    assert is_loopback(address) is loop


@pytest.mark.parametrize("mode, address, team, oidc, expected", [
    ("auto", "localhost", False, False, "off"),
    ("auto", "localhost", True, False, "password"),
    ("auto", "0.0.0.0", False, False, "password"),
    ("auto", "0.0.0.0", False, True, "oidc"),
    ("auto", "127.0.0.1", True, True, "oidc"),
    ("off", "0.0.0.0", True, True, "off"),
    ("password", "localhost", False, True, "password"),
])
def test_auto_mode(mode, address, team, oidc, expected):
    assert resolve_auth_mode(mode, address=address, team=team, oidc=oidc) == expected


def test_oidc_is_configured_by_an_auth_section_in_secrets(tmp_path):
    secrets = tmp_path / "secrets.toml"
    assert not oidc_configured([secrets])
    secrets.write_text('other = 1\n')
    assert not oidc_configured([secrets])
    secrets.write_text('[auth]\nredirect_uri = "https://zoo.example.org/oauth2callback"\n')
    assert oidc_configured([tmp_path / "missing.toml", secrets])
