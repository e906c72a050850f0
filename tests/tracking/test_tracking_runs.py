"""Runs logged from a user's script while another process owns the store (engine.tracking + store.logged_runs)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import store
from engine.tracking import NoOpRun, ingest_pending, start_run

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("logging_script.py")


def _script(store_path: Path, mode: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SCRIPT), str(store_path), mode, *args], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


@pytest.fixture
def owned(tmp_path):
    """A store this test process owns for the whole test (as the dashboard would)."""
    path = tmp_path / "store"
    with store.open_store(path) as st:
        yield path, st


def _only_run(st) -> dict:
    runs = st.list_runs()
    assert len(runs) == 1, runs
    return st.get_run(runs["run_id"].iloc[0])


def test_a_script_logs_while_another_process_owns_the_store(owned):
    path, st = owned
    code, out, err = _finish(_script(path, "done"))
    assert code == 0, err
    report = st.ingest_bundles()
    assert report.ingested and not report.failed and not report.incomplete, report
    run = _only_run(st)
    assert (run["status"], run["origin"], run["name"], run["seed"], run["owner"]) == \
        ("done", "logged", "done-run", 7, os.environ.get("USER") or "local")
    assert run["hparams"] == {"lr": 0.1, "seed": 7, "mode": "done"}
    # TrainSpec-shaped, so probes rebuild the model: the arch and dataset as given, steps as logged
    assert run["config"]["arch"]["name"] == "mlp" and run["config"]["arch"]["width"] == 16
    assert run["config"]["dataset"]["name"] == "mnist1d" and run["config"]["steps"] == 30
    assert run["built_by"] == {"builtin": "mlp", "width": 16, "depth": 1, "options": {}}
    assert st.get_zoo("logged-zoo")["zoo_id"] == run["zoo_id"]
    ck = st.list_checkpoints(run["run_id"])
    assert ck["step"].tolist() == [0, 30] and ck["test_acc"].iloc[1] == 0.25
    saved = load_file(str(path / f"{run['run_id']}.safetensors"))
    stored = st.get_tensors(ck["artifact_sha"].iloc[1])
    assert stored.keys() == saved.keys() and all(torch.equal(stored[k], saved[k]) for k in saved)
    m = st.metrics(run["run_id"])
    assert sorted(m[m["name"] == "loss"]["step"].tolist()) == list(range(31))  # one row per (step, split, name)
    assert set(zip(m["split"], m["name"])) == {("train", "loss"), ("log", "lr"), ("test", "acc")}
    assert not (path / "inbox" / f"track-{run['run_id']}").exists()  # writer record and bundles gone


def test_kill_9_keeps_complete_bundles_and_the_owner_marks_the_run_stopped(owned):
    path, st = owned
    proc = _script(path, "kill")
    line = proc.stdout.readline()
    assert line.startswith("READY "), (line, proc.stderr.read() if proc.poll() is not None else "")
    run_id = line.split()[1]
    time.sleep(0.3)  # a few more bundles of metrics
    st.ingest_bundles()
    assert st.get_run(run_id)["status"] == "running"  # its process is alive: not stopped
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    report = st.ingest_bundles()
    assert report.stopped == [run_id], report
    run = st.get_run(run_id)
    assert run["status"] == "stopped" and run["finished_at"] is not None
    assert f"pid {proc.pid}" in run["message"] and "ended without closing the run" in run["message"]
    assert st.list_checkpoints(run_id)["step"].tolist() == [0, 30]
    assert st.metrics(run_id, names="loss", split="train")["step"].max() > 30
    assert not (path / "inbox" / f"track-{run_id}").exists()  # half-written bundle and writer record removed
    assert st.ingest_bundles().stopped == []  # once


def test_an_exception_in_the_with_block_fails_the_run_with_its_text(owned):
    path, st = owned
    code, _, err = _finish(_script(path, "raise"))
    assert code == 1 and "RuntimeError: boom" in err  # the user's exception still propagates
    st.ingest_bundles()
    run = _only_run(st)
    assert run["status"] == "failed"
    assert run["message"] == "RuntimeError: boom <b>*not markdown*</b>"
    assert st.metrics(run["run_id"], names="loss", split="train")["step"].max() == 5  # logged before the error


def test_a_run_never_closed_ends_stopped_at_exit(owned):
    path, st = owned
    code, _, err = _finish(_script(path, "noclose"))
    assert code == 0, err
    st.ingest_bundles()
    run = _only_run(st)
    assert run["status"] == "stopped" and "exited without closing the run" in run["message"]


def test_bundles_wait_for_the_next_owner_when_nobody_owns_the_store(tmp_path):
    path = tmp_path / "never-opened"
    with start_run(path, zoo="z", name="r", arch="mlp", dataset="mnist1d") as run:
        run.log(1, train_loss=0.5)
    assert not (path / "store.duckdb").exists()  # the script never creates or opens the catalog
    assert len(ingest_pending(path).ingested) == 2
    with store.open_store(path, owner=False) as st:
        assert st.get_run(run.run_id)["status"] == "done"


def test_ingest_pending_names_the_owner_when_the_store_is_owned(owned):
    path, _ = owned
    with pytest.raises(store.StoreBusyError, match=rf"pid {os.getpid()}"):
        ingest_pending(path)


# -- zoos by name ----------------------------------------------------------------------------------------

def test_runs_join_the_zoo_of_their_name_and_owner(owned):
    path, st = owned
    trained = st.create_zoo("shared", {}, owner="alice")
    other = st.create_zoo("shared", {}, owner="bob")
    runs = [start_run(path, zoo="shared", owner=who, arch="mlp", dataset="mnist1d") for who in ("alice", "alice")]
    mine = start_run(path, zoo="fresh", owner="carol", arch="mlp", dataset="mnist1d")
    for run in (*runs, mine):
        run.finish()
    assert not st.ingest_bundles().failed
    assert {st.get_run(r.run_id)["zoo_id"] for r in runs} == {trained}  # alice's zoo, not bob's
    assert st.list_runs(other).empty
    fresh = st.get_zoo("fresh")
    assert fresh["owner"] == "carol" and st.get_run(mine.run_id)["zoo_id"] == fresh["zoo_id"]


# -- the writer's heartbeat (an owner on another host) ------------------------------------------------------

def test_a_writer_on_another_host_is_stopped_only_after_its_heartbeat_goes_quiet(owned):
    path, st = owned
    run = start_run(path, zoo="z", arch="mlp", dataset="mnist1d", heartbeat_s=1.0)
    run._stop_beat.set()  # the script's heartbeat thread, as if the script were elsewhere
    run.flush(wait=True)
    st.ingest_bundles()
    writer = path / "inbox" / f"track-{run.run_id}" / "writer.json"
    record = json.loads(writer.read_text())
    writer.write_text(json.dumps({**record, "host": "elsewhere", "pid": 1}))
    assert st.ingest_bundles().stopped == []  # beat just now
    old = time.time() - 120
    os.utime(writer, (old, old))
    assert st.ingest_bundles().stopped == [run.run_id]
    assert "no heartbeat from the script (pid 1 on host elsewhere)" in st.get_run(run.run_id)["message"]


# -- ranks -------------------------------------------------------------------------------------------------

def test_only_rank_0_writes_under_torch_distributed(tmp_path, monkeypatch):
    import torch.distributed as dist

    monkeypatch.setattr(dist, "is_available", lambda: True)
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 1)
    path = tmp_path / "store"
    with start_run(path, zoo="z", arch="mlp", dataset="mnist1d") as run:
        assert isinstance(run, NoOpRun)
        run.log(0, train_loss=1.0)
        assert run.checkpoint(torch.nn.Linear(2, 2), 0) is None
    assert not path.exists()
    monkeypatch.setattr(dist, "get_rank", lambda group=None: 0)
    with start_run(path, zoo="z", arch="mlp", dataset="mnist1d") as run:
        assert run.run_id
    assert list((path / "inbox").iterdir())


def test_torchrun_rank_before_init_is_read_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("RANK", "3")
    assert isinstance(start_run(tmp_path / "s", zoo="z", arch="mlp", dataset="mnist1d"), NoOpRun)
    assert not (tmp_path / "s").exists()


def test_a_gloo_group_of_two_writes_one_run_from_rank_0(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT.with_name("ddp_script.py")), str(tmp_path)], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    # two processes print to one pipe, so their lines may interleave: read the reports, not the lines
    assert sorted(re.findall(r"rank \d: \w+", proc.stdout)) == ["rank 0: Run", "rank 1: NoOpRun"], proc.stdout
    assert len(ingest_pending(tmp_path / "store").ingested) == 2
    with store.open_store(tmp_path / "store", owner=False) as st:
        runs = st.list_runs()
        assert len(runs) == 1 and runs["status"].tolist() == ["done"]
        assert st.metrics(runs["run_id"].tolist())["value"].tolist() == [0.0]  # rank 0's value only
