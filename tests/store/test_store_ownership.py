"""Single ownership: a second owner is refused with a clear message; a killed
owner's store is recovered automatically."""

from __future__ import annotations

import json
import os
import signal
import socket

import pytest

import store


def test_second_process_gets_busy_error_naming_holder(tmp_path, holder):
    root = tmp_path / "s"
    store.open_store(root).close()
    proc = holder(root, "st = store.open_store(path)")
    with pytest.raises(store.StoreBusyError, match=rf"pid {proc.pid}\b.*running `.*python.*requests/") as info:
        store.open_store(root)
    assert "IO Error" not in str(info.value)
    assert info.value.holder["pid"] == proc.pid
    with pytest.raises(store.StoreBusyError, match=rf"pid {proc.pid}"):
        store.open_store(root, owner=False)


def test_same_process_cannot_own_twice(tmp_path):
    with store.open_store(tmp_path / "s"):
        with pytest.raises(store.StoreBusyError, match=rf"pid {os.getpid()}"):
            store.open_store(tmp_path / "s")


def test_owner_killed_with_sigkill_is_recovered(tmp_path, holder):
    root = tmp_path / "s"
    proc = holder(root, "st = store.open_store(path)\nst.create_zoo('left-behind')")
    assert json.loads((root / "owner.json").read_text())["pid"] == proc.pid
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with store.open_store(root) as st:  # stale owner.json is simply overwritten
        assert json.loads((root / "owner.json").read_text())["pid"] == os.getpid()
        assert list(st.list_zoos()["name"]) == ["left-behind"]


def test_duckdb_lock_without_flock_becomes_busy_error(tmp_path, holder):
    root = tmp_path / "s"
    store.open_store(root).close()
    # someone opening store.duckdb directly (not through open_store)
    holder(root / "store.duckdb", "import duckdb\ncon = duckdb.connect(path)")
    with pytest.raises(store.StoreBusyError, match=r"in use by another process \(DuckDB reports pid \d+") as info:
        store.open_store(root)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    assert not (root / "owner.json").exists()  # the failed open released its claim


def test_forked_child_of_a_killed_owner_does_not_keep_the_lock(tmp_path, holder):
    root, child_pid_file = tmp_path / "s", tmp_path / "child.pid"
    # the owner forks a worker (as multiprocessing does), then is killed
    proc = holder(root, f"""
        import os
        st = store.open_store(path)
        child = os.fork()
        if child == 0:
            time.sleep(60)
            os._exit(0)
        open({str(child_pid_file)!r}, "w").write(str(child))
        """)
    child = int(child_pid_file.read_text())
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        store.open_store(root).close()
    finally:
        os.kill(child, signal.SIGKILL)


@pytest.mark.parametrize("as_owner", [True, False])
def test_a_live_owner_is_recognised_after_its_lock_file_was_deleted(tmp_path, holder, as_owner):
    """With owner.lock gone the flock no longer shows the owner; owner.json still does, and is left alone."""
    root = tmp_path / "s"
    proc = holder(root, "st = store.open_store(path)")
    recorded = json.loads((root / "owner.json").read_text())
    (root / "owner.lock").unlink()
    with pytest.raises(store.StoreBusyError, match=rf"owned by pid {proc.pid}\b.*owner.lock was deleted or replaced"):
        store.open_store(root, owner=as_owner)
    assert json.loads((root / "owner.json").read_text()) == recorded  # the real owner's record survives


def test_a_process_removes_only_an_owner_json_that_records_itself(tmp_path, holder):
    root = tmp_path / "s"
    other = holder(tmp_path / "unused", "pass")  # some other live process
    st = store.open_store(root)
    record = {**json.loads((root / "owner.json").read_text()), "pid": other.pid}
    (root / "owner.json").write_text(json.dumps(record))  # e.g. written by a process that took a replaced lock
    st.close()
    assert json.loads((root / "owner.json").read_text()) == record


def test_a_recycled_pid_is_not_taken_for_the_recorded_owner(tmp_path):
    """owner.json names a pid that is alive now, but with another start time: a stale record, not an owner."""
    root = tmp_path / "s"
    store.open_store(root).close()
    (root / "owner.json").write_text(json.dumps({"pid": os.getppid(), "pid_started": "linux:another-boot:1",
                                                 "host": socket.gethostname(), "command": "old"}))
    (root / "owner.lock").unlink()
    with store.open_store(root):
        assert json.loads((root / "owner.json").read_text())["pid"] == os.getpid()
