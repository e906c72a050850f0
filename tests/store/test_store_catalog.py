"""Round-trips through every catalog table and the typed query methods."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pandas as pd
import pytest

import store


def _zoo_with_runs(st, n=3):
    zoo = st.create_zoo("demo", {"width": [8, 16]}, owner="ann")
    runs = st.add_runs([
        {"zoo_id": zoo, "name": f"r{i}", "seed": i, "config": {"arch": {"width": 8 * (i + 1)}},
         "hparams": {"width": 8 * (i + 1), "optim": {"lr": 0.1}, "seed": i}, "device": "cpu"}
        for i in range(n)
    ])
    return zoo, runs


def test_zoo_round_trip_by_id_and_name(st):
    zoo = st.create_zoo("demo", {"width": [8, 16]}, owner="ann")
    newer = st.create_zoo("demo", None)
    got = st.get_zoo(zoo)
    assert (got["name"], got["sweep"], got["owner"]) == ("demo", {"width": [8, 16]}, "ann")
    assert st.get_zoo("demo")["zoo_id"] == newer  # a name means the newest zoo of that name
    assert set(st.list_zoos()["zoo_id"]) == {zoo, newer}
    with pytest.raises(store.NotFoundError, match="no zoo with id or name 'nope'"):
        st.get_zoo("nope")
    with pytest.raises(ValueError, match="zoo name must be a non-empty string; got ''"):
        st.create_zoo("")


def test_run_round_trip_and_update_stamps_times(st):
    zoo, (r0, r1, _) = _zoo_with_runs(st)
    run = st.get_run(r0)
    assert run["config"] == {"arch": {"width": 8}} and run["status"] == "queued" and run["seed"] == 0
    st.update_run(r0, status="running", device="cuda:0")
    assert st.get_run(r0)["started_at"] is not None
    st.update_run(r0, status="diverged", diverged_step=17, wall_s=np.float64(1.5))
    run = st.get_run(r0)
    assert (run["status"], run["diverged_step"], run["wall_s"]) == ("diverged", 17, 1.5)
    assert run["finished_at"] >= run["started_at"]
    aware = datetime(2024, 5, 1, 12, tzinfo=timezone(timedelta(hours=2)))
    st.update_run(r1, started_at=aware)
    assert st.get_run(r1)["started_at"] == datetime(2024, 5, 1, 10)  # stored as naive UTC
    assert list(st.list_runs(zoo, status="diverged")["run_id"]) == [r0]
    assert len(st.list_runs(zoo, status=["queued", "diverged"])) == 3
    assert len(st.list_runs(status=[])) == 0


def test_rows_with_different_fields_keep_every_field(st):
    first, second = st.add_runs([{"name": "a"}, {"name": "b", "seed": 5, "device": "cpu"}])
    assert (st.get_run(second)["seed"], st.get_run(second)["device"]) == (5, "cpu")
    assert st.get_run(first)["seed"] is None


def test_run_errors_name_the_value(st):
    with pytest.raises(ValueError, match=r"run status must be one of \[.*'diverged'.*\]; got 'exploded'"):
        st.add_runs([{"status": "exploded"}])
    (run,) = st.add_runs([{"name": "x"}])
    with pytest.raises(ValueError, match="run has no column 'colour'"):
        st.update_run(run, colour="red")
    with pytest.raises(store.NotFoundError, match="no run with run_id 'missing'"):
        st.update_run("missing", status="done")
    with pytest.raises(ValueError, match="Duplicate key"):
        st.add_runs([{"run_id": run}])


def test_runs_table_expands_hparams_and_final_metrics(st):
    zoo, runs = _zoo_with_runs(st)
    st.add_checkpoint(runs[0], 10, test_acc=0.5, train_loss=1.0)
    st.add_checkpoint(runs[0], 100, epoch=2.0, test_acc=0.9, train_loss=0.1)
    table = st.runs_table(zoo)
    assert list(table["run_id"]) == runs
    assert list(table["hp_width"]) == [8, 16, 24]
    assert list(table["hp_optim.lr"]) == [0.1] * 3
    assert "hp_seed" in table.columns and "seed" in table.columns
    first = table.iloc[0]
    assert (first["steps"], first["final_test_acc"], first["final_train_loss"]) == (100, 0.9, 0.1)
    assert math.isnan(table.iloc[1]["final_test_acc"])
    assert len(st.runs_table(None)) == len(runs)


def test_latest_batch_loss_is_the_last_step_per_run(st):
    zoo, runs = _zoo_with_runs(st, n=2)
    st.add_metrics([{"run_id": runs[0], "step": s, "split": "batch", "name": "loss", "value": 1.0 / s}
                    for s in (1, 2, 3)])
    live = st.latest_batch_loss(zoo)
    assert live.set_index("run_id").loc[runs[0], "step"] == 3 and len(live) == 1


def test_checkpoint_round_trip_and_duplicate_step_keeps_first(st):
    zoo, runs = _zoo_with_runs(st, n=2)
    ck = st.add_checkpoint(runs[0], 5, "ab" * 32, epoch=0.5, train_loss=2.0, train_acc=0.1,
                           test_loss=2.1, test_acc=0.2)
    again = st.add_checkpoint(runs[0], 5, "cd" * 32)
    assert again == ck
    got = st.get_checkpoint(ck)
    assert (got["run_id"], got["step"], got["epoch"], got["artifact_sha"], got["zoo_id"]) == \
        (runs[0], 5, 0.5, "ab" * 32, zoo)
    st.add_checkpoint(runs[1], 7)
    assert st.last_checkpoint(runs[0])["checkpoint_id"] == ck
    assert st.last_checkpoint("nobody") is None
    assert len(st.list_checkpoints(zoo_id=zoo)) == 2
    assert list(st.list_checkpoints(runs[1])["step"]) == [7]
    with pytest.raises(store.NotFoundError, match="no checkpoint"):
        st.get_checkpoint("nope")


def test_metrics_long_form_and_filters(st):
    zoo, runs = _zoo_with_runs(st, n=2)
    rows = [{"run_id": r, "step": s, "split": sp, "name": "loss", "value": float(s)}
            for r in runs for s in (1, 2) for sp in ("train", "test")]
    assert st.add_metrics(rows) == 8
    st.add_metrics(pd.DataFrame(rows[:2]).assign(value=99.0))  # already there: kept
    df = st.metrics(runs[0])
    assert list(df.columns) == ["run_id", "step", "split", "name", "value"]
    assert len(df) == 4 and 99.0 not in df["value"].tolist()
    assert len(st.metrics(zoo_id=zoo, split="test")) == 4
    assert len(st.metrics(runs, names=["acc"])) == 0


def test_delete_zoo_cascades_but_keeps_artifacts(st):
    import torch

    zoo, runs = _zoo_with_runs(st, n=2)
    other, (keep,) = st.create_zoo("other"), st.add_runs([{"name": "k"}])
    sha = st.put_tensors({"w": torch.zeros(2)})
    st.add_checkpoint(runs[0], 1, sha)
    st.add_checkpoint(keep, 1, sha)
    st.add_metrics([{"run_id": runs[0], "step": 1, "split": "train", "name": "loss", "value": 1.0}])
    counts = st.delete_zoo(zoo)
    assert counts == {"metric": 1, "checkpoint": 1, "run": 2, "zoo": 1}
    assert st.table_counts()["run"] == 1 and st.has_artifact(sha)
    assert list(st.list_zoos()["zoo_id"]) == [other]


def test_job_round_trip_queue_and_cancel(st):
    first = st.submit_job("train", {"sweep": {"width": [8]}}, owner="ann", zoo_id="z")
    second = st.submit_job("train", {"n": 2}, owner="ann")
    bob = st.submit_job("probe", {"n": 3}, owner="bob")
    job = st.get_job(first)
    assert (job["kind"], job["spec"], job["status"], job["progress"], job["zoo_id"]) == \
        ("train", {"sweep": {"width": [8]}}, "queued", 0.0, "z")
    assert st.next_queued_job()["job_id"] == first
    claimed = st.next_queued_job(claim=True, pid=123)
    assert (claimed["job_id"], claimed["status"], claimed["pid"]) == (first, "running", 123)
    assert claimed["started_at"] is not None
    # fairness: ann already has a running job, so bob's goes next
    assert st.next_queued_job()["job_id"] == bob
    assert st.next_queued_job(kind="train")["job_id"] == second
    st.update_job(first, progress=0.5, message="half way")
    assert st.get_job(first)["progress"] == 0.5
    with pytest.raises(ValueError, match=r"progress must be a fraction in \[0, 1\]; got 50"):
        st.update_job(first, progress=50)
    with pytest.raises(ValueError, match=r"job status must be one of .*; got 'diverged'"):
        st.update_job(first, status="diverged")
    st.update_job(first, status="done")
    assert st.get_job(first)["finished_at"] is not None
    assert st.cancel_job(first) is False
    assert st.cancel_job(second) is True and st.get_job(second)["status"] == "cancelled"
    assert list(st.list_jobs("queued")["job_id"]) == [bob]
    assert len(st.list_jobs(owner="ann")) == 2 and len(st.list_jobs(limit=1)) == 1
    with pytest.raises(store.NotFoundError, match="no job with job_id 'x'"):
        st.get_job("x")


def test_probe_round_trip_and_replace_keeps_id(st):
    key = store.probe_key("landscape", {"res": 5, "span": 1.0}, ["ck1"], "v1")
    assert key == store.probe_key("landscape", {"span": 1.0, "res": 5}, ["ck1"], "v1")
    assert key != store.probe_key("landscape", {"span": 1.0, "res": 5}, ["ck1"], "v2")
    assert st.get_probe(key) is None
    pid = st.put_probe(key, "landscape", params={"res": 5}, inputs=["ck1"], result={"loss": [1.0]},
                       code_version="v1", owner="ann")
    again = st.put_probe(key, "landscape", result={"loss": [2.0]})
    assert again == pid
    got = st.get_probe(key)
    assert (got["probe_id"], got["result"], got["kind"]) == (pid, {"loss": [2.0]}, "landscape")
    assert len(st.list_probes("landscape")) == 1 and len(st.list_probes("cka")) == 0
    assert st.delete_probe(key) and st.get_probe(key) is None


def test_report_round_trip(st):
    rid = st.add_report("Barriers", {"sections": [{"figure": "f1"}]}, author="ann")
    got = st.get_report(rid)
    assert (got["title"], got["author"], got["body"]) == ("Barriers", "ann", {"sections": [{"figure": "f1"}]})
    assert list(st.list_reports()["report_id"]) == [rid]


def test_export_parquet_writes_every_table(st, tmp_path):
    import pyarrow.parquet as pq

    zoo, _ = _zoo_with_runs(st, n=2)
    files = st.export_parquet(tmp_path / "out dir's")
    names = {f.name for f in files}
    assert {"zoo.parquet", "run.parquet", "checkpoint.parquet", "metric.parquet", "artifact.parquet",
            "probe.parquet", "job.parquet", "bundle.parquet", "report.parquet", "dataset.parquet",
            "meta.parquet"} == names
    assert pq.read_table(tmp_path / "out dir's" / "run.parquet").num_rows == 2
    assert pq.read_table(tmp_path / "out dir's" / "zoo.parquet").column("zoo_id").to_pylist() == [zoo]


def test_json_values_accept_numpy_and_reject_objects(st):
    zoo = st.create_zoo("np", {"lr": np.array([0.1, 0.2]), "k": np.int64(3)})
    assert st.get_zoo(zoo)["sweep"] == {"lr": [0.1, 0.2], "k": 3}
    with pytest.raises(TypeError, match="cannot store a value of type object as JSON"):
        st.create_zoo("bad", {"x": object()})


def test_one_store_serves_many_threads(st):
    from concurrent.futures import ThreadPoolExecutor

    (run,) = st.add_runs([{"name": "r"}])

    def work(step):
        st.add_metrics([{"run_id": run, "step": step, "split": "train", "name": "loss", "value": step}])
        st.update_run(run, wall_s=float(step))
        return len(st.metrics(run))

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(work, range(40)))
    assert len(st.metrics(run)) == 40


def test_job_overview_is_the_active_jobs_and_the_newest_others_without_specs(st):
    ids = [st.submit_job("probe", {"key": f"k{i}", "big": "x" * 1000}, owner="ann") for i in range(6)]
    st.update_job(ids[0], status="running")  # the oldest job still runs
    for job_id in ids[1:5]:
        st.update_job(job_id, status="done")
    overview = st.job_overview(recent=3)
    everything = st.list_jobs()
    want = everything[everything["status"].isin(["running", "queued"])
                      | everything["job_id"].isin(everything[~everything["status"].isin(["running", "queued"])]
                                                  .head(3)["job_id"])]
    assert list(overview["job_id"]) == list(want["job_id"]) == [ids[5], ids[4], ids[3], ids[2], ids[0]]
    assert "spec_json" not in overview.columns
    assert list(overview["status"]) == ["queued", "done", "done", "done", "running"]
