"""Who may do what: roles, password hashes, the users file and the access policy.

Three roles, each allowing what the one below allows and more:

========  ==========================================================
viewer    browse zoos, runs and stored results; export reports
editor    launch jobs (training, probes), import checkpoints, cancel own jobs
admin     cancel anyone's jobs, delete zoos, manage users
========  ==========================================================

The policy is enforced where work is accepted (``engine.jobs.Dispatcher``,
``engine.importer.record_import``), not only by hiding buttons. With sign-in off,
everyone is the local user with the admin role.

Built-in accounts live in a TOML users file (``[auth] users_file``)::

    [users.alice]
    role = "editor"
    password = "scrypt$16384$8$1$<salt>$<hash>"   # `zooscope users add alice --role editor`

    [users."bob@example.org"]                      # an OIDC user: listed by e-mail, no password
    role = "admin"

This module imports neither Streamlit nor the store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from engine.config import ConfigError
from engine.signin_backoff import SignInBackoff, SignInLocked

__all__ = [
    "ACTIONS",
    "ROLES",
    "SYSTEM_USER",
    "AccessPolicy",
    "PermissionDenied",
    "SignInLocked",
    "User",
    "access_policy",
    "cli_policy",
    "UsersFileError",
    "hash_password",
    "is_loopback",
    "load_users",
    "loggable",
    "oidc_configured",
    "resolve_auth_mode",
    "save_users",
    "users_path",
    "verify_password",
]

ROLES: tuple[str, ...] = ("viewer", "editor", "admin")  # in increasing order of rights

ACTIONS: dict[str, str] = {  # action -> the least role that may do it
    "browse": "viewer",
    "export": "viewer",  # export figures and reports, save a report
    "launch": "editor",  # submit training and probe jobs
    "import": "editor",  # import checkpoints
    "cancel": "editor",  # cancel one's own jobs
    "cancel_any": "admin",  # cancel someone else's jobs
    "delete_zoo": "admin",
    "manage_users": "admin",
    "register_dataset": "admin",  # a path is file access on the server machine (`zooscope datasets add`)
}

log = logging.getLogger(__name__)

SYSTEM_USER = "zooscope"  # the server itself (e.g. the UMAP warm-up job); never a sign-in name

# scrypt cost: 16 MiB of memory and ~50 ms per hash (the parameters OWASP suggests as a floor).
SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN = 2**14, 8, 1, 32


class PermissionDenied(PermissionError):
    """A user asked for something their role does not allow."""


class UsersFileError(ConfigError):
    """A users file that cannot be used; the message names the file and the entry."""


# -- passwords -------------------------------------------------------------------------------------

def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password(password: str, *, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """A salted scrypt hash, stored as ``scrypt$n$r$p$salt$hash`` (salt and hash urlsafe base64).

    References
    ----------
    Percival & Josefsson (2016), RFC 7914: The scrypt Password-Based Key Derivation Function.
    """
    if not isinstance(password, str) or not password:
        raise ValueError("password must be a non-empty string")
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, n, r, p)
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(digest)}"


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=SCRYPT_DKLEN,
                          maxmem=2 * 128 * n * r * p + 2**20)


def _parse_hash(stored: str) -> tuple[int, int, int, bytes, bytes]:
    parts = stored.split("$") if isinstance(stored, str) else []
    if len(parts) != 6 or parts[0] != "scrypt":
        raise ValueError("a password hash must look like 'scrypt$n$r$p$salt$hash' "
                         "(made by `zooscope users add`)")
    try:
        n, r, p = (int(x) for x in parts[1:4])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except ValueError:
        raise ValueError("a password hash has a non-numeric cost or bad base64 in 'scrypt$n$r$p$salt$hash'") from None
    if n < 2 or n & (n - 1) or r < 1 or p < 1 or not salt or len(digest) != SCRYPT_DKLEN:
        raise ValueError(f"a password hash has invalid scrypt parameters n={n}, r={r}, p={p} "
                         "(n a power of two >= 2, r, p >= 1, a 32-byte hash)")
    return n, r, p, salt, digest


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored`` (compared in constant time)."""
    n, r, p, salt, digest = _parse_hash(stored)
    return hmac.compare_digest(_scrypt(password, salt, n, r, p), digest)


_DUMMY_HASH: str | None = None


def burn_verify(password: str) -> None:
    """Spend the time of one verification, so an unknown name answers as slowly as a known one."""
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        _DUMMY_HASH = hash_password(secrets.token_hex(8))
    verify_password(password, _DUMMY_HASH)


# -- the users file --------------------------------------------------------------------------------

@dataclass(frozen=True)
class User:
    name: str
    role: str
    password: str | None = None  # the scrypt hash; None for OIDC users


def check_user_name(name: str) -> str:
    """A sign-in name: printable, no surrounding spaces, at most 128 characters, not the server's own."""
    if not isinstance(name, str) or not name or len(name) > 128 or not name.isprintable() or name != name.strip():
        raise ValueError(f"user name must be 1-128 printable characters without leading/trailing spaces; "
                         f"got {name!r}")
    if name == SYSTEM_USER:
        raise ValueError(f"user name {SYSTEM_USER!r} is reserved for the server itself; choose another")
    return name


def check_role(role: str) -> str:
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}; got {role!r}")
    return role


def load_users(path: str | os.PathLike[str]) -> dict[str, User]:
    """The accounts in a users file; a missing file means no accounts.

    Raises
    ------
    UsersFileError
        The file is not TOML, or an entry has a bad name, role or password hash;
        the message names the file and the entry.
    """
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except tomllib.TOMLDecodeError as exc:
        raise UsersFileError(f"users file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - {"users"})
    if unknown:
        raise UsersFileError(f"users file {path}: unknown top-level keys {unknown}; accounts go under [users.NAME]")
    table = data.get("users", {})
    if not isinstance(table, dict):
        raise UsersFileError(f"users file {path}: 'users' must be a table of [users.NAME] entries")
    users = {}
    for name, entry in table.items():
        users[name] = _user_entry(path, name, entry)
    return users


def _user_entry(path: Path, name: str, entry) -> User:
    where = f"users file {path}, entry [users.{json.dumps(name, ensure_ascii=False)}]"
    if not isinstance(entry, dict):
        raise UsersFileError(f"{where}: must be a table with role = ... (and password = ...); got {entry!r}")
    extra = sorted(set(entry) - {"role", "password"})
    if extra:
        raise UsersFileError(f"{where}: unknown keys {extra}; allowed: role, password")
    try:
        check_user_name(name)
        check_role(entry.get("role"))
        password = entry.get("password")
        if password is not None:
            _parse_hash(password)
    except ValueError as exc:
        raise UsersFileError(f"{where}: {exc}") from None
    return User(name, entry["role"], password)


def save_users(path: str | os.PathLike[str], users: Mapping[str, User]) -> None:
    """Write the users file atomically (temporary file, then rename), readable by its owner only."""
    path = Path(path)
    lines = ["# Zooscope accounts: edit with `zooscope users add|set-role|rm|ls`.", ""]
    for user in sorted(users.values(), key=lambda u: u.name):
        lines.append(f"[users.{json.dumps(check_user_name(user.name), ensure_ascii=False)}]")
        lines.append(f"role = {json.dumps(check_role(user.role))}")
        if user.password is not None:
            lines.append(f"password = {json.dumps(user.password)}")
        lines.append("")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(lines))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- which mode ------------------------------------------------------------------------------------

def is_loopback(address: str | None) -> bool:
    """True for addresses only this machine can reach (``localhost``, ``127.x``, ``::1``).

    An empty address is not loopback: servers bind every interface then.
    """
    if not address:
        return False
    if address.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def secrets_files(cwd: Path | None = None) -> list[Path]:
    """Where Streamlit looks for secrets by default."""
    return [Path.home() / ".streamlit" / "secrets.toml", (cwd or Path.cwd()) / ".streamlit" / "secrets.toml"]


def oidc_configured(files: list[Path] | None = None) -> bool:
    """True when a Streamlit secrets file has an ``[auth]`` section (``st.login`` then works)."""
    for f in files if files is not None else secrets_files():
        try:
            if isinstance(tomllib.loads(Path(f).read_text()).get("auth"), dict):
                return True
        except (OSError, tomllib.TOMLDecodeError):
            continue
    return False


def resolve_auth_mode(mode: str, *, address: str | None, team: bool, oidc: bool) -> str:
    """``"off"``, ``"password"`` or ``"oidc"`` for a configured ``mode``.

    ``"auto"`` is off for one user on a loopback address; on for ``--team`` or any
    other address: OIDC when the secrets have ``[auth]``, built-in passwords otherwise.
    """
    if mode in ("off", "password", "oidc"):
        return mode
    if mode != "auto":
        raise ValueError(f"auth mode must be off, password, oidc or auto; got {mode!r}")
    if not team and is_loopback(address):
        return "off"
    return "oidc" if oidc else "password"


# -- the policy ------------------------------------------------------------------------------------

class AccessPolicy:
    """Roles of users and the checks on their actions.

    Parameters
    ----------
    mode : {"off", "password", "oidc"}
        A resolved mode (see :func:`resolve_auth_mode`).
    users_file : path, optional
        The accounts; re-read when the file changes, so ``zooscope users ...`` takes effect
        on a running server.
    default_role : str
        The role of an OIDC user the users file does not name.
    local_user : str
        Who everyone is when sign-in is off.
    """

    def __init__(self, mode: str = "off", users_file: str | os.PathLike[str] | None = None, *,
                 default_role: str = "viewer", local_user: str | None = None):
        if mode not in ("off", "password", "oidc"):
            raise ValueError(f"AccessPolicy needs a resolved mode (off, password, oidc); got {mode!r}")
        self.mode = mode
        self.users_file = Path(users_file) if users_file is not None else None
        self.default_role = check_role(default_role)
        self.local_user = local_user or os.environ.get("USER") or "local"
        self._users: dict[str, User] = {}
        self._stamp: tuple | None = None
        self.backoff = SignInBackoff()  # failed sign-ins: state of this process, kept as long as the policy

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    def users(self) -> dict[str, User]:
        """The accounts, re-read when the file's size or modification time changed."""
        if self.users_file is None:
            return {}
        try:
            st = self.users_file.stat()
            stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._users = load_users(self.users_file) if stamp else {}
            self._stamp = stamp
        return self._users

    def _lookup(self, user: str) -> User | None:
        users = self.users()
        if self.mode == "oidc":  # e-mail addresses: case does not matter
            folded = {name.casefold(): u for name, u in users.items()}
            return folded.get(user.casefold())
        return users.get(user)

    def role_of(self, user: str | None) -> str | None:
        """The user's role, or None for someone who may not use this server."""
        if not self.enabled or user == SYSTEM_USER:
            return "admin"
        if not user:
            return None
        found = self._lookup(user)
        if found is not None:
            return found.role
        return self.default_role if self.mode == "oidc" else None

    def can(self, user: str | None, action: str) -> bool:
        role = self.role_of(user)
        return role is not None and ROLES.index(role) >= ROLES.index(_least_role(action))

    def require(self, user: str | None, action: str) -> None:
        """Raise :class:`PermissionDenied` saying who, what, and which role it needs, unless allowed."""
        if self.can(user, action):
            return
        need = _least_role(action)
        role = self.role_of(user)
        who = repr(user) if user else "an anonymous user"
        has = f"has the role {role!r}" if role else "has no account on this server"
        raise PermissionDenied(f"user {who} may not {_VERB[action]}: that needs the role {need!r} or higher, "
                               f"and {who} {has}; an admin can change roles with `zooscope users set-role`")

    def authenticate(self, name: str, password: str, *, address: str | None = None) -> str | None:
        """The user name when ``password`` is right, else None (unknown names take as long).

        Failures lock the account and, after a few, the client ``address`` for a time that doubles
        (see ``engine.signin_backoff``); each failure is logged with the name printed safely.

        Raises
        ------
        SignInLocked
            The account or the address is locked by earlier failures: the password was not checked.
        """
        if self.mode != "password":
            raise ValueError(f"password sign-in is not enabled (auth mode {self.mode!r})")
        try:
            self.backoff.check(name, address)
        except SignInLocked as exc:
            log.warning("sign-in refused for account %s from %s: locked for %.0f s more after failed attempts",
                        loggable(name), loggable(address or "an unknown address"), exc.retry_after_s)
            raise
        found = self.users().get(name)
        if found is None or found.password is None:
            burn_verify(password)
            ok = False
        else:
            ok = verify_password(password, found.password)
        if ok:
            self.backoff.succeeded(name, address)
            return found.name
        failures, locked_s = self.backoff.failed(name, address)
        log.warning("sign-in failed for account %s from %s (%d failed in a row; locked for %.0f s)",
                    loggable(name), loggable(address or "an unknown address"), failures, locked_s)
        return None


def loggable(text: object, limit: int = 64) -> str:
    """``text`` for a log line: quoted, control and non-ASCII characters escaped, cut to ``limit`` characters."""
    text = str(text)
    cut = f"...({len(text)} characters)" if len(text) > limit else ""
    return ascii(text[:limit]) + cut


def access_policy(settings, mode: str, store_path: str | os.PathLike[str] | None = None) -> AccessPolicy:
    """The policy for ``settings`` (``engine.settings.Settings``) in a resolved ``mode``."""
    return AccessPolicy(mode, users_path(settings, store_path), default_role=settings.auth.default_role)


def cli_policy(settings, store_path: str | os.PathLike[str] | None = None) -> AccessPolicy | None:
    """The policy for a CLI command that owns the store itself (no server running).

    The CLI runs on the server machine, as someone who can write the store folder anyway,
    so ``"auto"`` means off for it; a mode named explicitly in the settings (or
    ``$ZOOSCOPE_AUTH``) is applied to the ``--owner`` it records.
    """
    mode = settings.auth.mode
    if mode in ("auto", "off"):
        return None
    return access_policy(settings, mode, store_path)


def users_path(settings, store_path: str | os.PathLike[str] | None = None) -> Path:
    """The users file: ``[auth] users_file`` relative to the settings file, else to the store folder."""
    if settings.source is None and store_path is not None and not Path(settings.auth.users_file).is_absolute():
        return Path(store_path) / settings.auth.users_file
    return settings.resolve(settings.auth.users_file)


_VERB = {"browse": "browse this server", "export": "export reports", "launch": "launch jobs",
         "import": "import checkpoints", "cancel": "cancel jobs", "cancel_any": "cancel other users' jobs",
         "delete_zoo": "delete zoos", "manage_users": "manage users",
         "register_dataset": "register data sets (server-side paths)"}


def _least_role(action: str) -> str:
    try:
        return ACTIONS[action]
    except KeyError:
        raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}") from None
