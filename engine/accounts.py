"""``zooscope users``: add, change, remove and list the accounts of a team server.

The accounts live in the users file the settings name (``[auth] users_file``; without a
settings file, ``<store>/users.toml``). A running server re-reads it on change, so a new
account or role works without a restart.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from engine.auth import ROLES, User, check_role, check_user_name, hash_password, load_users, save_users, users_path

__all__ = ["add_users_arguments", "users_command"]

MIN_PASSWORD = 8


def add_users_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="users_command", required=True)
    add = sub.add_parser("add", help="add an account (password asked for, or read from stdin)")
    add.add_argument("name", help="sign-in name (for OIDC: the e-mail address)")
    add.add_argument("--role", choices=ROLES, default="viewer")
    how = add.add_mutually_exclusive_group()
    how.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    how.add_argument("--oidc", action="store_true", help="an identity-provider account: no password here")
    pw = sub.add_parser("passwd", help="set a new password for an account")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true")
    sr = sub.add_parser("set-role", help="change an account's role")
    sr.add_argument("name")
    sr.add_argument("role", choices=ROLES)
    rm = sub.add_parser("rm", help="remove an account")
    rm.add_argument("name")
    sub.add_parser("ls", help="list the accounts")


def users_command(args, store_path: Path) -> int:
    from engine.settings import load_settings

    path = users_path(load_settings(store_path), store_path)
    users = load_users(path)
    action = args.users_command
    if action == "ls":
        return _ls(users, path)
    name = args.name
    if action == "add":
        if name in users:
            raise ValueError(f"user {name!r} already exists in {path}; use `zooscope users set-role` or "
                             "`zooscope users passwd`, or `zooscope users rm` first")
        check_user_name(name)
        password = None if args.oidc else hash_password(_read_password(args.password_stdin))
        users[name] = User(name, check_role(args.role), password)
        said = f"added {name!r} as {args.role}"
    else:
        if name not in users:
            known = ", ".join(sorted(users)) or "none"
            raise ValueError(f"no user {name!r} in {path} (users: {known})")
        if action == "set-role":
            users[name] = User(name, check_role(args.role), users[name].password)
            said = f"{name!r} is now {args.role}"
        elif action == "passwd":
            users[name] = User(name, users[name].role, hash_password(_read_password(args.password_stdin)))
            said = f"set a new password for {name!r}"
        else:
            del users[name]
            said = f"removed {name!r}"
    save_users(path, users)
    print(f"{said} ({path})")
    return 0


def _ls(users: dict[str, User], path: Path) -> int:
    if not users:
        print(f"no accounts in {path}; add one with `zooscope users add NAME --role admin`")
        return 0
    width = max(len(n) for n in users)
    for user in sorted(users.values(), key=lambda u: u.name):
        print(f"{user.name:<{width}}  {user.role:<6}  {'password' if user.password else 'oidc (no password)'}")
    return 0


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise ValueError("the two passwords differ; nothing was changed")
    if len(password) < MIN_PASSWORD:
        raise ValueError(f"a password needs at least {MIN_PASSWORD} characters; got {len(password)}")
    return password
