"""Requests dropped by CLI commands for the owner."""

from __future__ import annotations

import os
import re

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


def test_oversize_request_is_set_aside_unread(st):
    big = st.path / "requests" / "0002-big.json"
    big.write_text('{"kind": "train", "payload": {"pad": "' + "x" * store.MAX_REQUEST_BYTES + '"}}')
    with pytest.warns(UserWarning, match=r"0002-big.json is unreadable \(larger than 1,048,576 bytes"):
        assert st.take_requests() == []
    assert (st.path / "requests" / "0002-big.json.bad").exists() and not big.exists()


def test_request_link_is_not_followed(st, tmp_path):
    target = tmp_path / "secret.json"
    target.write_text('{"kind": "train", "payload": {}}')
    link = st.path / "requests" / "0003-link.json"
    link.symlink_to(target)
    with pytest.warns(UserWarning, match="0003-link.json is unreadable"):
        assert st.take_requests() == []
    moved = st.path / "requests" / "0003-link.json.bad"
    assert moved.is_symlink()  # the link moved, not its target
    assert target.read_text() == '{"kind": "train", "payload": {}}'


def test_request_fifo_or_folder_is_not_read(st):
    fifo = st.path / "requests" / "0004-fifo.json"
    os.mkfifo(fifo)  # opening it for a plain read would wait for a writer forever
    (st.path / "requests" / "0005-dir.json").mkdir()
    with pytest.warns(UserWarning) as caught:
        assert st.take_requests() == []
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert re.search(r"0004-fifo.json is unreadable \(not a regular file \(mode p", messages[0])
    assert re.search(r"0005-dir.json is unreadable \(not a regular file \(mode d", messages[1])
    assert (st.path / "requests" / "0004-fifo.json.bad").exists()
    assert (st.path / "requests" / "0005-dir.json.bad").is_dir()


def test_drop_request_refuses_what_the_owner_would_not_read(st):
    with pytest.raises(ValueError, match="the owner reads at most 1,048,576 .*pass a file path"):
        store.drop_request(st.path, "train", {"config": "x" * store.MAX_REQUEST_BYTES})
    assert list((st.path / "requests").iterdir()) == []


@pytest.mark.parametrize("text, why", [
    ("[" * 200_000 + "]" * 200_000, r"JSON nested too deep to parse"),
    ('[{"kind": "train", "payload": {}}]', r"not a JSON object but list \[\{'kind': 'train'"),
    ("1" + "0" * 4000, r"not a JSON object but int 1000000000"),
    ('"train"', r"not a JSON object but str 'train'"),
    ('{"kind": ["train"], "payload": {}}', r"kind \['train'\] and payload \{\} are not a string and an object"),
    ('{"kind": "train", "payload": null}', r"kind 'train' and payload None are not a string and an object"),
])
def test_valid_json_that_is_not_a_request_is_set_aside(st, text, why):
    """The owner's loop reads req["kind"] and req.get(...): whatever lies in the folder, it gets dicts."""
    (st.path / "requests" / "0005-odd.json").write_text(text)
    good = store.drop_request(st.path, "train", {"config": "c.toml"})
    with pytest.warns(UserWarning, match=r"0005-odd.json is unreadable \(" + why):
        taken = st.take_requests()
    assert [r["kind"] for r in taken] == ["train"] and not good.exists()
    assert (st.path / "requests" / "0005-odd.json.bad").exists()


def test_a_request_that_cannot_be_removed_is_not_taken_and_stops_no_other(st, monkeypatch):
    """Taken means deleted: one that stays would run at every look; and the requests read before it in the
    same look were already deleted, so an error here would lose them."""
    import pathlib

    first = store.drop_request(st.path, "train", {"n": 1})
    stuck = store.drop_request(st.path, "train", {"n": 2})
    last = store.drop_request(st.path, "train", {"n": 3})
    unlink = pathlib.Path.unlink

    def refuse(self, missing_ok=False):
        if self == stuck:
            raise PermissionError(13, "Permission denied", str(self))
        return unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(pathlib.Path, "unlink", refuse)
    with pytest.warns(UserWarning, match=re.escape(stuck.name) + r" could not be removed \(\[Errno 13\] Permission "
                                         r"denied.*so it is not taken"):
        taken = st.take_requests()
    assert [r["payload"]["n"] for r in taken] == [1, 3] and stuck.exists() and not first.exists() and not last.exists()
