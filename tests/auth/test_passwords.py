import pytest

from engine.auth import hash_password, verify_password

FAST = {"n": 2**4, "r": 1, "p": 1}  # cheap parameters: these tests check the format, not the cost


def test_hash_round_trip_and_format():
    stored = hash_password("correct horse", **FAST)
    name, n, r, p, salt, digest = stored.split("$")
    assert (name, n, r, p) == ("scrypt", "16", "1", "1") and salt and digest
    assert verify_password("correct horse", stored)
    assert not verify_password("correct hors", stored)
    assert not verify_password("", stored)


def test_equal_passwords_get_different_salts():
    assert hash_password("pw", **FAST) != hash_password("pw", **FAST)


def test_default_cost_is_the_scrypt_floor():
    assert hash_password("pw").startswith("scrypt$16384$8$1$")


@pytest.mark.parametrize("stored, match", [
    ("plain-text", "must look like 'scrypt\\$n\\$r\\$p\\$salt\\$hash'"),
    ("bcrypt$1$1$1$aa$bb", "must look like"),
    ("scrypt$x$8$1$aa$bb", "non-numeric cost"),
    ("scrypt$15$8$1$AAAA$" + "A" * 43, "n=15"),
    ("scrypt$16$8$1$AAAA$AAAA", "32-byte hash"),
])
def test_malformed_hashes_are_refused(stored, match):
    with pytest.raises(ValueError, match=match):
        verify_password("pw", stored)


def test_empty_password_is_refused():
    with pytest.raises(ValueError, match="non-empty"):
        hash_password("")
