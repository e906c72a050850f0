"""Back-off after failed sign-ins: locks that double per account and per address, refusals that do not
check the password, a reset after success, bounded state, and failures logged with names printed safely."""

from __future__ import annotations

import logging

import pytest

from engine.auth import AccessPolicy, SignInLocked, User, hash_password, loggable, save_users
from engine.signin_backoff import BackoffSchedule, SignInBackoff

PASSWORD = "correct horse"


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def policy(tmp_path):
    path = tmp_path / "users.toml"
    hashed = hash_password(PASSWORD, n=16, r=1, p=1)
    save_users(path, {n: User(n, "editor", hashed) for n in ("ed", "ann")})
    pol = AccessPolicy("password", path)
    pol.backoff.clock = Clock()
    return pol


def test_a_wrong_password_locks_the_account_and_a_right_one_waits_for_the_lock(policy):
    clock = policy.backoff.clock
    assert policy.authenticate("ed", "wrong", address="10.0.0.7") is None
    with pytest.raises(SignInLocked, match=r"too many failed sign-in attempts; try again in 1 s") as locked:
        policy.authenticate("ed", "wrong again", address="10.0.0.7")
    assert locked.value.retry_after_s == pytest.approx(1.0)
    with pytest.raises(SignInLocked):  # the right password does not get in while the lock holds
        policy.authenticate("ed", PASSWORD, address="10.0.0.9")
    clock.now += 1.0
    assert policy.authenticate("ed", "wrong", address="10.0.0.7") is None  # the second failure: 2 s
    clock.now += 1.5
    with pytest.raises(SignInLocked, match="try again in 1 s"):
        policy.authenticate("ed", PASSWORD)
    clock.now += 0.5
    assert policy.authenticate("ed", PASSWORD, address="10.0.0.7") == "ed"
    # success forgot the failures: the next mistake locks for 1 s again, not 4 s
    assert policy.authenticate("ed", "wrong") is None
    with pytest.raises(SignInLocked, match="try again in 1 s"):
        policy.authenticate("ed", PASSWORD)


def test_locks_double_up_to_the_cap_and_refused_attempts_do_not_extend_them():
    clock = Clock()
    backoff = SignInBackoff(account=BackoffSchedule(free=0, base_s=1.0, max_s=10.0), clock=clock)
    locks = []
    for _ in range(6):
        locks.append(backoff.failed("ed")[1])
        clock.now += locks[-1]
    assert locks == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    backoff.failed("ed")
    clock.now += 9.0
    with pytest.raises(SignInLocked):
        backoff.check("ed")  # a refusal...
    clock.now += 1.0
    backoff.check("ed")  # ...left the lock where it was


def test_an_address_is_locked_after_its_free_failures_across_accounts(policy):
    clock = policy.backoff.clock
    for name in ("a1", "a2", "a3", "a4"):  # four names, each locked on its own; the address still free
        assert policy.authenticate(name, "guess", address="203.0.113.5") is None
    assert policy.authenticate("a5", "guess", address="203.0.113.5") is None  # the fifth: the address is locked
    with pytest.raises(SignInLocked):
        policy.authenticate("ann", PASSWORD, address="203.0.113.5")
    assert policy.authenticate("ann", PASSWORD, address="198.51.100.1") == "ann"  # elsewhere, ann gets in
    clock.now += 1.0
    assert policy.authenticate("ann", PASSWORD, address="203.0.113.5") == "ann"


def test_unknown_names_are_locked_as_known_ones_are(policy):
    assert policy.authenticate("nobody", "guess") is None
    with pytest.raises(SignInLocked, match="try again in 1 s"):
        policy.authenticate("nobody", "guess")


def test_the_state_is_bounded_whatever_names_and_addresses_are_tried():
    clock = Clock()
    backoff = SignInBackoff(max_entries=50, clock=clock)
    for k in range(1000):
        backoff.failed("x" * 10_000 + str(k), address=f"10.{k // 256}.{k % 256}.1")
    assert len(backoff) <= 50
    assert all(len(key[1]) <= 129 for key in backoff._records)
    backoff.failed("target")
    with pytest.raises(SignInLocked):
        backoff.check("target")  # the most recent failure is kept


def test_old_failures_are_forgotten():
    clock = Clock()
    backoff = SignInBackoff(forget_after_s=60.0, clock=clock)
    for _ in range(5):
        backoff.failed("ed")
    clock.now += 1000.0
    assert backoff.failed("ed") == (1, 1.0)


def test_a_bad_schedule_is_refused():
    with pytest.raises(ValueError, match="a back-off schedule needs free >= 0 and 0 < base_s <= max_s"):
        BackoffSchedule(free=0, base_s=5.0, max_s=1.0)
    with pytest.raises(ValueError, match="max_entries must be at least 2; got 0"):
        SignInBackoff(max_entries=0)


def test_failures_are_logged_with_the_name_printed_safely(policy, caplog):
    evil = "ed\x1b[2J\u202egnp.exe\r\nforged line" + "y" * 200
    with caplog.at_level(logging.WARNING, logger="engine.auth"):
        assert policy.authenticate(evil, "guess", address="10.0.0.7") is None
        with pytest.raises(SignInLocked):
            policy.authenticate(evil, "guess", address="10.0.0.7")
    failed, refused = [r.getMessage() for r in caplog.records]
    assert failed.startswith("sign-in failed for account 'ed\\x1b[2J\\u202egnp.exe\\r\\nforged line")
    assert "from '10.0.0.7' (1 failed in a row; locked for 1 s)" in failed
    assert refused.startswith("sign-in refused for account 'ed\\x1b")
    for line in (failed, refused):
        assert line.isprintable() and line.isascii()
        assert f"...({len(evil)} characters)" in line
    assert loggable("ann") == "'ann'"
