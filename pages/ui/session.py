"""Who uses this browser session: the signed-in user, signing in and out, and the client's address.

Session identity only. The resources it is checked against (the access policy, with the
store and dispatcher) live for the server process in ``services.py`` and are passed in, so
this module imports neither ``services`` nor ``signin``: ``services -> signin -> session``
and ``services -> session``, no cycle.
"""

from __future__ import annotations

import streamlit as st

from engine.auth import AccessPolicy

__all__ = ["SESSION_USER", "client_address", "forget_sign_in", "remember_sign_in", "session_user"]

SESSION_USER = "zooscope_user"  # st.session_state key of the signed-in user (password sign-in)


def session_user(access: AccessPolicy) -> str | None:
    """The user of this browser session, or None when sign-in is on and nobody (allowed) is signed in."""
    if not access.enabled:
        return access.local_user
    if access.mode == "oidc":
        user = st.user.get("email") if st.user.is_logged_in else None
    else:
        user = st.session_state.get(SESSION_USER)
    return user if user and access.role_of(user) is not None else None


def remember_sign_in(user: str) -> None:
    """Record ``user`` (already authenticated) as this session's user."""
    st.session_state[SESSION_USER] = user


def forget_sign_in() -> None:
    """This session has no signed-in user any more (sign-out, or a removed account)."""
    st.session_state.pop(SESSION_USER, None)


def client_address() -> str | None:
    """The address this session's browser connected from (the peer the server sees), or None when unknown.

    Behind a reverse proxy this is the proxy's address; sign-in back-off then counts per proxy.
    """
    try:
        return st.context.ip_address
    except Exception:  # noqa: BLE001 - no request context (bare mode, AppTest): unknown
        return None
