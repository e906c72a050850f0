"""Selections that live in the URL, so a copied link opens the same view."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import streamlit as st

__all__ = ["query_list", "set_query", "synced_multiselect", "synced_range", "synced_selectbox"]


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


def _kept(key: str) -> str:
    # Streamlit drops a widget's state when the user moves to another page (the widget drawn there
    # is another widget, and the address loses its query). This plain session-state entry outlives
    # the widget, so a choice such as the sidebar's zoo carries across pages.
    return f"_kept_{key}"


def synced_selectbox(label: str, options: Sequence, *, key: str, param: str | None = None,
                     format_func: Callable = str, container=st, default: Any = None, **kw) -> Any:
    """A selectbox whose value is mirrored in the query parameter ``param`` (default: ``key``).

    It starts from the URL, else the value last chosen on any page, else ``default`` (if one of
    ``options``), else the first option.
    """
    param = param or key
    options = list(options)
    if not options:
        return None
    values = [str(o) for o in options]
    if key in st.session_state and str(st.session_state[key]) in values:
        current = str(st.session_state[key])
    else:
        candidates = [st.query_params.get(param), st.session_state.get(_kept(key)), default]
        current = next((str(c) for c in candidates if c is not None and str(c) in values), values[0])
    st.session_state[key] = options[values.index(current)]
    value = container.selectbox(label, options, key=key, format_func=format_func, **kw)
    st.session_state[_kept(key)] = value
    set_query(**{param: value})
    return value


def synced_multiselect(label: str, options: Sequence, *, key: str, param: str | None = None,
                       default: Sequence = (), format_func: Callable = str, container=st, **kw) -> list:
    """A multiselect mirrored in the query parameter ``param`` as a comma-separated list."""
    param = param or key
    options = list(options)
    values = [str(o) for o in options]
    if key in st.session_state:
        chosen = [o for o in st.session_state[key] if str(o) in values]
    else:
        wanted = query_list(param) or [str(v) for v in st.session_state.get(_kept(key), [])]
        chosen = [options[values.index(w)] for w in wanted if w in values] or list(default)
    st.session_state[key] = chosen
    value = container.multiselect(label, options, key=key, format_func=format_func, **kw)
    st.session_state[_kept(key)] = value
    set_query(**{param: value})
    return value


def synced_range(label: str, lo: float, hi: float, *, key: str, default: tuple[float, float], step: float,
                 param: str | None = None, container=st, **kw) -> tuple[float, float]:
    """A two-handle slider ``(low, high)`` mirrored in the query parameter ``param`` as ``low,high``.

    It starts from the URL (when both values parse; clamped to ``[lo, hi]``), else the value last
    chosen on any page, else ``default``.
    """
    param = param or key
    if key not in st.session_state:
        st.session_state[key] = _range_from(query_list(param)) or st.session_state.get(_kept(key)) or default
    low, high = sorted(min(max(float(v), lo), hi) for v in st.session_state[key])
    st.session_state[key] = (low, high)
    value = container.slider(label, lo, hi, step=step, key=key, **kw)
    st.session_state[_kept(key)] = value
    set_query(**{param: [f"{v:g}" for v in value]})
    return value


def _range_from(values: list[str]) -> tuple[float, float] | None:
    try:
        pair = tuple(float(v) for v in values)
    except ValueError:
        return None
    return pair if len(pair) == 2 else None
