"""Selections that live in the URL, so a copied link opens the same view."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import streamlit as st

__all__ = ["query_list", "set_query", "synced_multiselect", "synced_selectbox"]


def set_query(**values: Any) -> None:
    """Write (or, for None/empty, remove) query parameters."""
    for key, value in values.items():
        if value is None or value == [] or value == "":
            st.query_params.pop(key, None)
        elif isinstance(value, (list, tuple)):
            st.query_params[key] = ",".join(map(str, value))
        else:
            st.query_params[key] = str(value)


def query_list(key: str) -> list[str]:
    raw = st.query_params.get(key, "")
    return [v for v in raw.split(",") if v]


def synced_selectbox(label: str, options: Sequence, *, key: str, param: str | None = None,
                     format_func: Callable = str, container=st, **kw) -> Any:
    """A selectbox whose value is mirrored in the query parameter ``param`` (default: ``key``)."""
    param = param or key
    options = list(options)
    if not options:
        return None
    wanted = st.query_params.get(param)
    values = [str(o) for o in options]
    if key not in st.session_state or str(st.session_state[key]) not in values:
        st.session_state[key] = options[values.index(wanted)] if wanted in values else options[0]
    value = container.selectbox(label, options, key=key, format_func=format_func, **kw)
    set_query(**{param: value})
    return value


def synced_multiselect(label: str, options: Sequence, *, key: str, param: str | None = None,
                       default: Sequence = (), format_func: Callable = str, container=st, **kw) -> list:
    param = param or key
    options = list(options)
    values = [str(o) for o in options]
    if key not in st.session_state:
        wanted = query_list(param)
        chosen = [options[values.index(w)] for w in wanted if w in values] or list(default)
        st.session_state[key] = chosen
    else:
        st.session_state[key] = [o for o in st.session_state[key] if str(o) in values]
    value = container.multiselect(label, options, key=key, format_func=format_func, **kw)
    set_query(**{param: value})
    return value
