"""Sign-in: the gate in front of every page when sign-in is on, and the account box in the sidebar.

Built-in accounts sign in with a password (``zooscope users add``); with an identity
provider configured (``[auth]`` in ``.streamlit/secrets.toml``) Streamlit's ``st.login``
does the OIDC flow and ``st.user`` carries the e-mail address. Roles come from
``engine.auth.AccessPolicy``; the job layer enforces them whatever the page shows.
Failed passwords lock the account and the client address for a time that doubles
(``AccessPolicy.authenticate``, state kept in the server process).

This module takes the access policy as an argument and imports ``session`` only, so
``services`` (which shows the gate from ``current_user``) can import it without a cycle.
"""

from __future__ import annotations

import math
from typing import Protocol

import streamlit as st

from engine.auth import AccessPolicy, SignInLocked

from .session import client_address, forget_sign_in, remember_sign_in, session_user
from .text import literal

__all__ = ["account_box", "sign_in_gate"]


class _HasAccess(Protocol):
    access: AccessPolicy


def sign_in_gate(access: AccessPolicy) -> None:
    """Return when sign-in is off or someone allowed is signed in; else show only the sign-in form and stop."""
    if session_user(access) is not None:
        return
    st.title("Sign in to Zooscope")
    if access.mode == "oidc":
        _oidc_sign_in()
    else:
        _password_sign_in(access)
    st.stop()


def _password_sign_in(access: AccessPolicy) -> None:
    forget_sign_in()  # a removed account's session ends here too
    with st.form("sign_in"):
        name = st.text_input("User name", key="signin_name", autocomplete="username")
        password = st.text_input("Password", type="password", key="signin_password",
                                 autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return
    try:
        user = access.authenticate(name.strip(), password, address=client_address()) \
            if name.strip() and password else None
    except SignInLocked as exc:  # unknown names are locked too: this never tells whether the name exists
        wait = max(1, math.ceil(exc.retry_after_s))
        st.error(f"Too many failed sign-in attempts: try again in {wait} s.", icon=":material/timer:")
        return
    if user is None:
        # One message whatever was wrong: it never tells whether the name exists.
        st.error("Wrong user name or password.", icon=":material/lock:")
        return
    remember_sign_in(user)
    st.rerun()


def _oidc_sign_in() -> None:
    if st.user.is_logged_in:  # signed in with the provider, but with no e-mail address to give a role to
        st.error("Your identity provider did not share an e-mail address, which this server needs to give you "
                 "a role. Ask your administrator.")
        st.button("Sign out", key="sign_out_oidc", on_click=st.logout)
        return
    st.markdown("This Zooscope server is shared by a team; sign in with your organisation's account.")
    st.button("Sign in", key="sign_in_oidc", type="primary", on_click=st.login)


def account_box(svc: _HasAccess) -> None:
    """Who is signed in, with which role, and a sign-out button (nothing when sign-in is off)."""
    if not svc.access.enabled:
        return
    user = session_user(svc.access)
    if user is None:
        return
    role = svc.access.role_of(user)
    st.caption(f"Signed in as **{literal(user)}** · {literal(role)}")
    st.button("Sign out", key="sign_out", icon=":material/logout:", on_click=_sign_out,
              args=(svc.access.mode,))


def _sign_out(mode: str) -> None:
    forget_sign_in()
    if mode == "oidc":
        st.logout()
