"""Shared views: built once per key, bounded, and keyed by content or by the owner's catalog."""

from __future__ import annotations

import pandas as pd

from pages.ui import view_cache
from pages.ui.view_cache import catalog_key, frame_key, shared_view


class _Owner:
    def __init__(self):
        self.generation = 0


def test_a_view_is_built_once_per_key_and_shared(monkeypatch):
    view_cache.clear_caches()
    built = []
    first = shared_view(("t", 1), lambda: built.append(1) or {"fig": 1})
    again = shared_view(("t", 1), lambda: built.append(1) or {"fig": 2})
    other = shared_view(("t", 2), lambda: built.append(1) or {"fig": 3})
    assert first is again and other == {"fig": 3} and len(built) == 2


def test_views_are_bounded_least_recently_used_first(monkeypatch):
    view_cache.clear_caches()
    monkeypatch.setattr(view_cache, "MAX_VIEWS", 3)
    for i in range(3):
        shared_view(("t", i), lambda i=i: i)
    shared_view(("t", 0), lambda: "rebuilt")  # used again: now the newest
    shared_view(("t", 3), lambda: 3)
    assert shared_view(("t", 0), lambda: "rebuilt") == 0
    assert shared_view(("t", 1), lambda: "rebuilt") == "rebuilt"  # the least recently used went first


def test_frame_key_follows_content_not_identity():
    a = pd.DataFrame({"run": ["r1", "r2"], "acc": [0.5, 0.75], "ids": [["a"], ["b", "c"]]})
    assert frame_key(a) == frame_key(a.copy())
    assert frame_key(a) != frame_key(a.assign(acc=[0.5, 0.7500001]))
    assert frame_key(a) != frame_key(a.assign(ids=[["a"], ["b"]]))


def test_catalog_key_tells_owners_and_generations_apart():
    one, two = _Owner(), _Owner()
    assert catalog_key(one) == catalog_key(one) and catalog_key(one) != catalog_key(two)
    before = catalog_key(one)
    one.generation += 1
    assert catalog_key(one) != before and catalog_key(one)[0] == before[0]
