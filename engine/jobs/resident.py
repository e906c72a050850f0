"""What a dashboard server holds for its whole life: the owner's store, dispatcher and workers.

A resident is opened once per key (the store path), under a lock, by the first request that
needs it, and closed only when the process ends: :func:`close_all` runs from ``engine.serve``
when the server stops and from ``atexit`` for a server started some other way
(``streamlit run app.py``). Tests call :func:`close_all` between tests.

Residents are deliberately *not* in Streamlit's caches. Any client, signed in or not, can
send the clear-cache message (``BackMsg(clear_cache=True)``, the menu's "Clear cache"), and
Streamlit then releases every ``st.cache_resource`` entry; an owner store there would be
closed and its running jobs killed by an anonymous message. Clearing the cache clears page
data only.

This module imports neither Streamlit nor the store.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = ["close_all", "hold", "held_keys"]

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class _Held:
    value: Any
    close: Callable[[Any], None]


_lock = threading.Lock()  # held while a resident opens: two first requests never open the same store twice
_held: dict[str, _Held] = {}


def hold(key: str, open_: Callable[[], T], close: Callable[[T], None]) -> T:
    """The resident ``key``, opened with ``open_()`` the first time and kept until :func:`close_all`.

    Parameters
    ----------
    key : str
        What identifies the resident (e.g. ``"owner:" + store path``).
    open_ : callable
        Opens it; an exception propagates and leaves nothing held, so the next call tries again
        (a store another process owns may be free later).
    close : callable
        Called with the value by :func:`close_all`; it must not raise for a value already closed.
    """
    held = _held.get(key)  # the common case, without the lock: a dict read is atomic
    if held is not None:
        return held.value
    with _lock:
        held = _held.get(key)
        if held is None:
            held = _held[key] = _Held(open_(), close)
    return held.value


def held_keys() -> list[str]:
    """The keys of the residents held now."""
    return list(_held)


def close_all() -> None:
    """Close every resident, each once (server shutdown, tests); one that fails is logged, the rest still close."""
    with _lock:
        held = list(_held.items())
        _held.clear()
    for key, item in held:
        try:
            item.close(item.value)
        except Exception:  # noqa: BLE001 - shutting down: close the others, say what failed
            log.exception("closing the resident %r failed", key)


atexit.register(close_all)
