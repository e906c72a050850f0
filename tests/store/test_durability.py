"""What the owner showed as written survives a deleted WAL and a crash, and a vanished WAL is caught.

DuckDB keeps commits in ``store.duckdb.wal`` until a checkpoint. An owner process (as the
server is) writes rows; the test deletes the WAL under it, then SIGKILLs it and reopens the
store. The rows must be there: the owner checkpoints after each ingested batch and each
dispatcher tick, and when it finds its WAL gone it saves what the WAL held, then refuses
further writes with a message that says why.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import store

REPO_ROOT = Path(__file__).resolve().parents[2]

# The owner: open the store as the server does (with a dispatcher), then obey lines on stdin.
_OWNER = """
import sys
import store
from engine.jobs import Dispatcher

st = store.open_store(sys.argv[1])
disp = Dispatcher(st)
print("owner", flush=True)
for line in sys.stdin:
    try:
        if line.strip() == "ingest":
            print("ingested", st.ingest_bundles().ingested, flush=True)
        elif line.strip() == "zoo":
            st.create_zoo("written-between-ticks")
            print("written", flush=True)
        elif line.strip() == "tick":
            disp.tick()
            print("ticked", flush=True)
        elif line.strip() == "write":
            st.create_zoo("after-the-fault")
            print("written", flush=True)
    except store.StoreError as exc:
        print(type(exc).__name__, " ".join(str(exc).split()), flush=True)
"""


class Owner:
    def __init__(self, path):
        self.proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_OWNER), str(path)], cwd=REPO_ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        assert self.ask(None) == "owner", self.proc.stderr.read()

    def ask(self, command: str | None) -> str:
        if command is not None:
            self.proc.stdin.write(command + "\n")
            self.proc.stdin.flush()
        line = self.proc.stdout.readline().strip()
        if not line:
            raise AssertionError(f"owner process said nothing: {self.proc.stderr.read()}")
        return line

    def crash(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)


def _bundle(path) -> None:
    """A finished run with its zoo and a probe, as a worker reports them."""
    store.write_bundle(path, "job1", {
        "zoo": [{"zoo_id": "z1", "name": "shown-as-done"}],
        "run": [{"run_id": "r1", "zoo_id": "z1", "status": "done", "seed": 0}],
        "probe": [{"probe_id": "p1", "key": "k1", "kind": "landscape", "result_json": "{}"}],
    })


def test_ingested_rows_survive_a_deleted_wal_and_a_crash(tmp_path):
    path = tmp_path / "store"
    store.open_store(path).close()
    owner = Owner(path)
    try:
        _bundle(path)
        assert owner.ask("ingest") == "ingested ['job1/000000']"
        (path / "store.duckdb.wal").unlink(missing_ok=True)  # someone cleans up "temporary" files
    finally:
        owner.crash()
    with store.open_store(path) as st:
        assert list(st.list_zoos()["name"]) == ["shown-as-done"]
        assert st.get_run("r1")["status"] == "done"
        assert len(st.list_probes()) == 1


def test_a_wal_deleted_under_the_owner_is_saved_then_writes_are_refused(tmp_path):
    path = tmp_path / "store"
    store.open_store(path).close()
    owner = Owner(path)
    try:
        assert owner.ask("zoo") == "written"  # committed, in the WAL only until the next tick
        wal = path / "store.duckdb.wal"
        assert wal.is_file()
        wal.unlink()
        answer = owner.ask("tick")
        assert answer.startswith("StoreFilesChangedError")
        assert "store.duckdb.wal (the catalog's write-ahead log) was deleted" in answer
        assert "saved into store.duckdb by a checkpoint, so nothing is lost" in answer
        refusal = owner.ask("write")
        assert refusal.startswith("StoreFilesChangedError") and "refuses further writes" in refusal
    finally:
        owner.crash()
    with store.open_store(path) as st:
        assert list(st.list_zoos()["name"]) == ["written-between-ticks"]


def test_a_replaced_catalog_file_stops_the_owner(st):
    st.create_zoo("a")
    st.checkpoint()
    db = st.path / "store.duckdb"
    db.rename(db.with_name("moved.duckdb"))
    db.write_bytes(db.with_name("moved.duckdb").read_bytes())  # same bytes, another file
    with pytest.raises(store.StoreFilesChangedError, match=r"catalog .*store.duckdb was replaced by another file"):
        st.checkpoint()
    with pytest.raises(store.StoreFilesChangedError, match="refuses further writes"):
        st.create_zoo("b")


def test_close_leaves_no_wal_behind(tmp_path):
    with store.open_store(tmp_path / "s") as st:
        st.create_zoo("a")
        assert (tmp_path / "s" / "store.duckdb.wal").is_file()
        assert st.checkpoint() is True and st.checkpoint() is False  # a second one has nothing to do
        st.create_zoo("b")
    assert not (tmp_path / "s" / "store.duckdb.wal").exists()
