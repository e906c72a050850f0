"""Requests dropped by CLI commands for the owner."""

from __future__ import annotations

import json
import os
import re

import pytest

import store
from store import requests


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


def test_a_request_that_cannot_be_claimed_is_not_taken_and_stops_no_other(st, monkeypatch):
    """Taken means claimed (renamed away): one that stays would run at every look; and the requests read before it
    in the same look were already claimed, so an error here would lose them."""
    first = store.drop_request(st.path, "train", {"n": 1})
    stuck = store.drop_request(st.path, "train", {"n": 2})
    last = store.drop_request(st.path, "train", {"n": 3})
    rename = os.rename

    def refuse(src, dst):
        if os.fspath(src) == os.fspath(stuck):
            raise PermissionError(13, "Permission denied", os.fspath(src))
        return rename(src, dst)

    monkeypatch.setattr(requests.os, "rename", refuse)
    with pytest.warns(UserWarning, match=re.escape(stuck.name) + r" could not be claimed \(renamed to "
                                         + re.escape(stuck.name) + r"\.claimed: \[Errno 13\] Permission denied.*so it "
                                         r"is not taken"):
        taken = st.take_requests()
    assert [r["payload"]["n"] for r in taken] == [1, 3] and stuck.exists() and not first.exists() and not last.exists()
    monkeypatch.setattr(requests.os, "rename", rename)
    assert [r["payload"]["n"] for r in st.take_requests()] == [2]
    assert list((st.path / "requests").iterdir()) == []


# -- claimed before read: a file replaced meanwhile is read, never deleted unread; each request applied once ------

def _after_read(monkeypatch, action):
    """Run ``action`` once, in the owner's look, after a request file was read and before anything else."""
    parse = requests._parse_request
    pending = [action]

    def parse_then(data):
        request = parse(data)
        while pending:
            pending.pop()()
        return request

    monkeypatch.setattr(requests, "_parse_request", parse_then)


def _write(path, kind, n):
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(json.dumps({"kind": kind, "payload": {"n": n}}))
    os.replace(tmp, path)  # as drop_request does: whole files, by rename


def test_a_request_replaced_after_it_was_read_is_taken_at_the_next_look(st, monkeypatch):
    """Another writer puts a file under the same name between the owner's read and its removal: the old code
    removed that name, so the new request was deleted unread. Claimed first, the name is free: it waits."""
    path = store.drop_request(st.path, "train", {"n": 1})
    _after_read(monkeypatch, lambda: _write(path, "train", 2))
    assert [r["payload"]["n"] for r in st.take_requests()] == [1]
    assert path.exists()
    assert [r["payload"]["n"] for r in st.take_requests()] == [2]
    assert st.take_requests() == [] and list((st.path / "requests").iterdir()) == []


def test_a_claimed_file_replaced_after_it_was_read_is_not_removed_unread(st, monkeypatch):
    """Even the owner's own claimed name: only the file that was read is renamed or removed (same inode)."""
    path = store.drop_request(st.path, "train", {"n": 1})
    claimed = path.with_name(path.name + ".claimed")
    _after_read(monkeypatch, lambda: _write(claimed, "train", 2))
    with pytest.warns(UserWarning, match=re.escape(claimed.name) + " was replaced or removed after it was read; "
                                         "what was read is applied"):
        assert [r["payload"]["n"] for r in st.take_requests()] == [1]
    assert [r["payload"]["n"] for r in st.take_requests()] == [2]
    assert list((st.path / "requests").iterdir()) == []


def test_an_owner_that_stops_between_claim_and_apply_leaves_the_request_to_the_next(st):
    path = store.drop_request(st.path, "train", {"n": 1})
    (claim,) = st.claim_requests()  # then the owner is killed: nothing was applied
    assert not path.exists() and path.with_name(path.name + ".claimed").exists()
    (again,) = st.claim_requests()  # the next owner's first look
    assert again.request == claim.request and again.begin()
    again.done()
    assert st.claim_requests() == [] and list((st.path / "requests").iterdir()) == []


def test_an_owner_that_stops_while_applying_leaves_the_request_set_aside_not_rerun(st):
    path = store.drop_request(st.path, "train", {"n": 1})
    later = store.drop_request(st.path, "train", {"n": 2})
    first, _ = st.claim_requests()
    assert first.begin()  # then the owner is killed while applying it: its effect may or may not be in the catalog
    with pytest.warns(UserWarning, match=re.escape(path.name) + " was being applied when the store's owner stopped, "
                                         r"so whether it took effect is unknown and it is not run again.*renamed "
                                         "to " + re.escape(path.name) + r"\.interrupted"):
        (second,) = st.claim_requests()
    assert second.request["payload"] == {"n": 2} and later.with_name(later.name + ".claimed").exists()
    assert path.with_name(path.name + ".interrupted").exists()
    assert st.claim_requests()[0].request["payload"] == {"n": 2}  # claimed, not begun: still the next owner's


# -- what lies at a claim name is never a request's to block: set aside under a free name, or worked around ----------

def _tree(path):
    """A folder with a file in it (what the owner must never delete), at ``path``."""
    path.mkdir()
    (path / "keep.txt").write_text("not the owner's")
    return path


@pytest.mark.parametrize("suffix, aside", [(".claimed", ".bad"), (".applying", ".interrupted")])
def test_a_folder_at_a_claim_name_is_set_aside_under_a_free_name(st, suffix, aside):
    """A folder at ``<id>.json.claimed`` (or ``.applying``) whose set-aside name is taken too (another folder with
    files, here) could not be moved, and every request dropped with that id was skipped (or never begun) for ever."""
    path = store.drop_request(st.path, "train", {"n": 1})
    folder = _tree(path.with_name(path.name + suffix))
    occupied = _tree(path.with_name(path.name + aside))
    with pytest.warns(UserWarning, match=re.escape(path.name) + r".*renamed to " + re.escape(path.name + aside)
                      + r"\.\d+-[0-9a-f]{8} \(" + re.escape(path.name + aside) + " was taken"):
        assert [r["payload"]["n"] for r in st.take_requests()] == [1]
    assert not folder.exists() and (occupied / "keep.txt").exists()
    (moved,) = (p for p in (st.path / "requests").iterdir() if p.name.startswith(path.name + aside + "."))
    assert (moved / "keep.txt").read_text() == "not the owner's"  # moved whole, not deleted
    assert st.take_requests() == []


def test_an_earlier_file_set_aside_is_not_replaced(st):
    bad = st.path / "requests" / "0001-bad.json"
    for text in ("{first", "{second"):
        bad.write_text(text)
        with pytest.warns(UserWarning, match="0001-bad.json is unreadable"):
            assert st.take_requests() == []
    kept = sorted(p.read_text() for p in (st.path / "requests").iterdir())
    assert kept == ["{first", "{second"]


@pytest.mark.parametrize("suffix", [".claimed", ".applying"])
def test_a_folder_at_a_claim_name_that_cannot_be_moved_is_ignored(st, monkeypatch, suffix):
    """The folder cannot be renamed at all (another user's, in a sticky folder): it stays, with a warning at each
    look, untouched; a request dropped with its id is claimed under a name of its own and applied."""
    path = store.drop_request(st.path, "train", {"n": 1})
    folder = _tree(path.with_name(path.name + suffix))
    replace = os.replace

    def refuse(src, dst):
        if os.fspath(src) == os.fspath(folder):
            raise PermissionError(1, "Operation not permitted", os.fspath(src))
        return replace(src, dst)

    monkeypatch.setattr(requests.os, "replace", refuse)
    with pytest.warns(UserWarning, match=re.escape(path.name) + r".* could not be renamed to .*Operation not "
                      "permitted.*remove it by hand"):
        assert [r["payload"]["n"] for r in st.take_requests()] == [1]
    assert (folder / "keep.txt").read_text() == "not the owner's"
    assert sorted(p.name for p in (st.path / "requests").iterdir()) == [folder.name]
    again = store.drop_request(st.path, "train", {"n": 2})
    os.replace(again, path)  # a second request under the blocked id
    with pytest.warns(UserWarning, match="remove it by hand"):
        assert [r["payload"]["n"] for r in st.take_requests()] == [2]
    assert sorted(p.name for p in (st.path / "requests").iterdir()) == [folder.name]


def test_a_link_at_a_claim_name_is_moved_not_followed(st, tmp_path):
    target = _tree(tmp_path / "elsewhere")
    path = store.drop_request(st.path, "train", {"n": 1})
    link = path.with_name(path.name + ".claimed")
    link.symlink_to(target, target_is_directory=True)
    with pytest.warns(UserWarning, match=re.escape(path.name) + r" is unreadable \(.*renamed to "
                      + re.escape(path.name) + r"\.bad"):
        assert [r["payload"]["n"] for r in st.take_requests()] == [1]  # the link set aside first, in the same look
    assert path.with_name(path.name + ".bad").is_symlink() and (target / "keep.txt").exists()
    assert sorted(p.name for p in (st.path / "requests").iterdir()) == [path.name + ".bad"]
