"""Sign-in: the gate in front of every page when sign-in is on, and the account box in the sidebar.

Built-in accounts sign in with a password (``zooscope users add``); with an identity
provider configured (``[auth]`` in ``.streamlit/secrets.toml``) Streamlit's ``st.login``
does the OIDC flow and ``st.user`` carries the e-mail address. Roles come from
``engine.auth.AccessPolicy``; the job layer enforces them whatever the page shows.
"""

from __future__ import annotations

import streamlit as st

from .services import SESSION_USER, Services, get_services, session_user
from .text import literal

__all__ = ["account_box", "sign_in_gate"]


def sign_in_gate() -> None:
    """Return when sign-in is off or someone allowed is signed in; else show only the sign-in form and stop."""
    svc = get_services()
    if session_user(svc.access) is not None:
        return
    st.title("Sign in to Zooscope")
    if svc.access.mode == "oidc":
        _oidc_sign_in()
    else:
        _password_sign_in(svc)
    st.stop()


def _password_sign_in(svc: Services) -> None:
    st.session_state.pop(SESSION_USER, None)  # a removed account's session ends here too
    with st.form("sign_in"):
        name = st.text_input("User name", key="signin_name", autocomplete="username")
        password = st.text_input("Password", type="password", key="signin_password",
                                 autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if not submitted:
        return
    user = svc.access.authenticate(name.strip(), password) if name.strip() and password else None
    if user is None:
        # One message whatever was wrong: it never tells whether the name exists.
        st.error("Wrong user name or password.", icon=":material/lock:")
        return
    st.session_state[SESSION_USER] = user
    st.rerun()


def _oidc_sign_in() -> None:
    if st.user.is_logged_in:  # signed in with the provider, but with no e-mail address to give a role to
        st.error("Your identity provider did not share an e-mail address, which this server needs to give you "
                 "a role. Ask your administrator.")
        st.button("Sign out", key="sign_out_oidc", on_click=st.logout)
        return
    st.markdown("This Zooscope server is shared by a team; sign in with your organisation's account.")
    st.button("Sign in", key="sign_in_oidc", type="primary", on_click=st.login)


def account_box(svc: Services) -> None:
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
    st.session_state.pop(SESSION_USER, None)
    if mode == "oidc":
        st.logout()
