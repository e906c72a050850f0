"""The panel a page shows while the engine behind it is not built yet: what it will do, nothing faked."""

from __future__ import annotations

import streamlit as st

__all__ = ["pending_page"]


def pending_page(title: str, purpose: str, features: list[str], waits_for: str) -> None:
    st.title(title)
    st.markdown(purpose)
    st.info(f"**Not built yet.** This page waits for the capability *{waits_for}*. "
            "Until it lands, it shows no numbers at all rather than invented ones.", icon="🚧")
    st.markdown("**What it will show**\n" + "\n".join(f"- {f}" for f in features))
