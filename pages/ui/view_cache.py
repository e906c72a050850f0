"""Views built once per process from immutable inputs, shared by every session.

Building a Plotly figure costs 10-20 ms of validation (its template alone is copied and
checked each time), and a page draws several; the similarity grids, collapse and matching
measures drawn on the Representations page cost more. Their inputs are stored probe
results, which never change under their key, and view settings. So a view is built once
under a key that names everything it depends on (the probe keys and every setting and label
that goes into it) and handed to every session as the same object: ``st.plotly_chart``
serialises a figure without changing it. ``st.cache_data`` would copy the figure through
pickle on every run (about as slow as building it), and its argument hashing would read
the activations each time.

Nothing handed out here may be changed by its caller: arrays come read-only from the
probe cache, and figures are only drawn.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import TypeVar

__all__ = ["MAX_VIEWS", "catalog_key", "clear_caches", "frame_key", "shared_view"]

T = TypeVar("T")

MAX_VIEWS = 512  # views kept per process (a figure of a tiny zoo is ~10-100 kB)

_VIEWS: OrderedDict[Hashable, object] = OrderedDict()
_LOCK = threading.Lock()


def shared_view(key: tuple, build: Callable[[], T]) -> T:
    """The value ``build()`` returned for ``key`` in this process, built now if absent.

    Parameters
    ----------
    key : tuple
        Hashable, and naming every input of ``build``: a view name, the probe keys of the
        results drawn, and every setting and label used. Two calls with equal keys must
        build equal values.
    build : callable
        Makes the value (a figure, a measure, or a tuple of both); called outside the lock,
        so two sessions asking at once may both build it (the first one kept wins).
    """
    with _LOCK:
        if key in _VIEWS:
            _VIEWS.move_to_end(key)
            return _VIEWS[key]  # type: ignore[return-value]
    value = build()
    with _LOCK:
        value = _VIEWS.setdefault(key, value)  # type: ignore[assignment]
        _VIEWS.move_to_end(key)
        while len(_VIEWS) > MAX_VIEWS:
            _VIEWS.popitem(last=False)
    return value


_OWNERS: weakref.WeakKeyDictionary[object, str] = weakref.WeakKeyDictionary()


def catalog_key(dispatcher) -> tuple[str, int]:
    """This owner's catalog as it is now: ``(a token of the dispatcher, its generation)``.

    For views of rows that change while jobs run (training curves). The generation alone
    restarts at 0 with every dispatcher, so two stores opened one after the other in a
    process (tests) would share keys; the token tells them apart.
    """
    with _LOCK:
        token = _OWNERS.get(dispatcher)
        if token is None:
            token = _OWNERS[dispatcher] = uuid.uuid4().hex
    return token, dispatcher.generation


def frame_key(frame) -> str:
    """A digest of a (small) table's content, for the key of a view drawn from it."""
    text = frame.to_json(orient="split", date_format="iso", double_precision=15, default_handler=str)
    return hashlib.sha256(text.encode()).hexdigest()


def clear_caches() -> None:
    """Forget every shared view (benchmarks' cold runs; tests)."""
    with _LOCK:
        _VIEWS.clear()
