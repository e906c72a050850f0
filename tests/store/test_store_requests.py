"""Requests dropped by CLI commands for the owner."""

from __future__ import annotations

import pytest

import store


def test_requests_are_taken_once_in_order(st):
    first = store.drop_request(st.path, "train", {"config": "configs/demo.toml"})
    store.drop_request(st.path, "probe", {"kind": "cka"})
    assert first.parent == st.path / "requests"
    taken = st.take_requests()
    assert [(r["kind"], r["payload"]) for r in taken] == [("train", {"config": "configs/demo.toml"}),
                                                          ("probe", {"kind": "cka"})]
    assert taken[0]["request_id"] < taken[1]["request_id"]
    assert st.take_requests() == []


def test_unreadable_request_is_set_aside_with_warning(st):
    (st.path / "requests" / "0001-bad.json").write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable"):
        assert st.take_requests() == []
    assert (st.path / "requests" / "0001-bad.json.bad").exists()


def test_drop_request_needs_a_store(tmp_path):
    with pytest.raises(store.StoreError, match="no store at"):
        store.drop_request(tmp_path, "train", {})
    with pytest.raises(TypeError, match="payload must be a dict; got list"):
        store.drop_request(tmp_path, "train", [])
