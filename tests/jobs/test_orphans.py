"""A worker that outlives a killed owner is stopped by the next one, and cannot make its job's runs "done".

A server process owns the store and runs a long training job in a local worker (its own
session, so it survives the server). The test SIGKILLs the server, then becomes the owner
itself, as a restarted server does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import store
from engine.jobs import Dispatcher
from store.processes import process_is_running

REPO_ROOT = Path(__file__).resolve().parents[2]

_SERVER = """
import sys, time
import store
from engine.config import load_sweep
from engine.jobs import Dispatcher

st = store.open_store(sys.argv[1])
disp = Dispatcher(st)
zoo_id, job_id = disp.submit_sweep(load_sweep({
    "name": "long", "grid": {"seed": [0, 1]},
    "base": {"dataset": {"name": "moons"}, "arch": {"name": "mlp", "width": 8}, "batch_size": 32,
             "steps": 200000, "checkpoints": [1, 2, 200000]}}))
while len(st.list_checkpoints(zoo_id=zoo_id)) < 2:
    disp.tick()
    time.sleep(0.1)
print(job_id, st.get_job(job_id)["pid"], flush=True)
time.sleep(600)
"""


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_the_next_owner_stops_an_orphaned_worker_and_fails_its_job(tmp_path):
    path = tmp_path / "store"
    server = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_SERVER), str(path)], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = server.stdout.readline().split()
    assert len(line) == 2, server.stderr.read()
    job_id, worker = line[0], int(line[1])
    try:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=30)
        assert process_is_running(worker, None)  # the orphan: training on, outside any worker cap

        with store.open_store(path) as st:
            disp = Dispatcher(st)  # a restarted server
            assert not process_is_running(worker, None)
            job = st.get_job(job_id)
            assert job["status"] == "failed"
            assert f"its worker (pid {worker}) was still running and has been stopped" in job["error"]
            zoo_id = job["zoo_id"]
            assert set(st.runs_table(zoo_id)["status"]) == {"failed"}
            for _ in range(3):
                disp.tick()
            assert set(st.runs_table(zoo_id)["status"]) == {"failed"}
            assert not list((path / "inbox" / job_id).glob("part-*"))  # nothing half-written left behind
            disp.stop(kill_workers=True)
        # the identity the next owner checked: pid, start time and host, recorded when the worker started
        record = json.loads((path / "inbox" / job_id / "worker.json").read_text())
        assert record["pid"] == worker and record["pid_started"].startswith("linux:")
    finally:
        _kill_group(worker)
        if server.poll() is None:
            server.kill()


def test_a_bundle_for_a_job_that_ended_is_refused_and_reported(owner):
    st, disp = owner
    zoo_id = st.create_zoo("z")
    (run_id,) = st.add_runs([{"zoo_id": zoo_id, "status": "running", "seed": 0}])
    job_id = st.submit_job("train", {"run_ids": [run_id]}, owner="ada", zoo_id=zoo_id)
    st.update_job(job_id, status="failed", error="worker process was killed by signal 9 (SIGKILL)")
    st.update_run(run_id, status="failed")
    # what a worker that outlived its job writes at its end
    store.write_bundle(st.path, job_id, {"run": [{"run_id": run_id, "status": "done"}]}, part=3)
    report = disp.tick()
    assert st.get_run(run_id)["status"] == "failed"  # a failed job's run does not turn "done" later
    assert list(report.refused) == [f"{job_id}/000003"]
    assert f"job {job_id} is failed, so its result bundles are no longer accepted" in report.refused[f"{job_id}/000003"]
    assert "(result bundle" in st.get_job(job_id)["error"] and "was refused)" in st.get_job(job_id)["error"]
    assert (st.path / "inbox" / job_id / "refused-part-000003" / "run.parquet").is_file()  # kept, never ingested
    assert not disp.tick().refused  # reported once
