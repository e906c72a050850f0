"""An owner killed mid-ingest loses nothing that was committed, and the next owner ingests the rest.

Fifty complete bundles are written as workers write them (artifacts first, then Parquet
tables and a manifest last; see engine/jobs/context.py). A separate process opens the store
as owner and ingests them, with a hook that stops it at a chosen point of bundle ``KILL_AT``:
inside its transaction (checkpoint and metric rows inserted, not committed) or just after its
commit (before its folder is removed). The test SIGKILLs it there and reopens the store.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import pytest
import torch

import store

JOBS, PARTS, METRICS = 5, 10, 20  # 50 bundles, each one checkpoint + its artifact + 20 metric rows
KILL_AT = 23  # the bundle (1-based, in ingestion order) the owner is killed in


def _write_worker_bundles(path) -> None:
    for j in range(JOBS):
        job_id, run_id = f"job{j}", f"run{j}"
        for part in range(PARTS):
            sha = store.put_tensors_at(path, {"w": torch.full((4, 4), float(j * PARTS + part))})
            tables = {
                "artifact": [store.artifact_row(path, sha)],
                "checkpoint": [{"checkpoint_id": f"{run_id}-{part}", "run_id": run_id, "step": part,
                                "artifact_sha": sha, "test_acc": part / PARTS}],
                "metric": [{"run_id": run_id, "step": part, "split": "train", "name": f"m{k}", "value": float(k)}
                           for k in range(METRICS)],
            }
            if part == 0:
                tables["run"] = [{"run_id": run_id, "zoo_id": "z", "status": "running", "seed": j}]
            store.write_bundle(path, job_id, tables, part=part)


# The owner process: ingest everything, but stop (and say so) at the chosen point of bundle KILL_AT.
_OWNER = """
import sys, time
import store, store.store as impl

path, where, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
seen = {"metric": 0, "removed": 0}
real_insert, real_remove = impl.insert_arrow, impl._remove_bundle

def insert_arrow(con, table, tbl, policy):
    real_insert(con, table, tbl, policy)
    if table == "metric":
        seen["metric"] += 1
        if where == "in-transaction" and seen["metric"] == kill_at:
            print("stopped", flush=True)
            time.sleep(600)

def remove_bundle(folder):
    seen["removed"] += 1
    if where == "after-commit" and seen["removed"] == kill_at:
        print("stopped", flush=True)
        time.sleep(600)
    real_remove(folder)

impl.insert_arrow, impl._remove_bundle = insert_arrow, remove_bundle
st = store.open_store(path)
print("owner", flush=True)
st.ingest_bundles()
print("finished", flush=True)
"""


def _kill_owner_mid_ingest(path, where: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_OWNER), str(path), where, str(KILL_AT)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = [proc.stdout.readline().strip() for _ in range(2)]
        assert lines == ["owner", "stopped"], (lines, proc.stderr.read() if proc.poll() is not None else "")
        with pytest.raises(store.StoreBusyError):  # it really holds the store while stopped
            store.open_store(path)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def _check_whole_bundles(st, committed: int) -> None:
    """Exactly ``committed`` bundles are in the catalog, each with all of its rows and nothing else."""
    assert st.table_counts()["bundle"] == committed
    ckpts = st.list_checkpoints()
    assert len(ckpts) == committed and st.table_counts()["artifact"] == committed
    metrics = st.metrics()
    assert len(metrics) == committed * METRICS
    per_ckpt = metrics.groupby(["run_id", "step"]).size()
    assert (per_ckpt == METRICS).all()  # no bundle's metrics half there
    assert set(per_ckpt.index) == set(zip(ckpts["run_id"], ckpts["step"]))


@pytest.mark.parametrize("where, committed", [("in-transaction", KILL_AT - 1), ("after-commit", KILL_AT)])
def test_killed_owner_loses_nothing_committed_and_the_next_ingests_the_rest(tmp_path, where, committed):
    path = tmp_path / "store"
    store.open_store(path).close()
    _write_worker_bundles(path)
    _kill_owner_mid_ingest(path, where)

    with store.open_store(path) as st:  # the killed owner's lock went with it
        _check_whole_bundles(st, committed)
        report = st.ingest_bundles()
        assert not report.failed and not report.incomplete
        assert len(report.ingested) == JOBS * PARTS - committed
        # a bundle committed just before the kill is still in the inbox: delivered again, skipped
        assert report.duplicate == ([] if where == "in-transaction" else [f"job2/{KILL_AT - 21:06d}"])
        _check_whole_bundles(st, JOBS * PARTS)
        assert len(st.list_runs()) == JOBS
        ckpts = st.list_checkpoints()
        assert ckpts["checkpoint_id"].is_unique and len(ckpts) == JOBS * PARTS
        for sha in ckpts["artifact_sha"]:
            assert st.get_tensors(sha)["w"].shape == (4, 4)  # exists and hashes to its name
        assert not list((path / "inbox").glob("*/part-*"))
