import os
import signal
import time

import pytest

import store
from engine.jobs import Dispatcher


def _wait_for(predicate, disp, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        disp.tick()
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_train_job_records_runs_checkpoints_artifacts_and_metrics(owner, tiny_sweep):
    st, disp = owner
    zoo_id, job_id = disp.submit_sweep(tiny_sweep())
    (job,) = disp.run_until_done([job_id])
    assert job["status"] == "done" and job["progress"] == 1.0
    runs = st.runs_table(zoo_id)
    assert list(runs["status"]) == ["done", "done"] and (runs["steps"] == 30).all()
    assert runs["final_test_acc"].between(0, 1).all()
    ckpts = st.list_checkpoints(zoo_id=zoo_id)
    assert sorted(ckpts["step"].unique()) == [0, 10, 20, 30] and len(ckpts) == 8
    weights = st.get_tensors(ckpts["artifact_sha"].iloc[-1])
    assert any(k.endswith("weight") for k in weights)
    metrics = st.metrics(runs["run_id"].tolist())
    assert {"train", "test", "batch"} <= set(metrics["split"])
    assert not list((st.path / "inbox").glob("*/part-*"))  # every bundle ingested and cleared


def test_killed_worker_fails_its_job_and_keeps_committed_checkpoints(owner, tiny_sweep):
    st, disp = owner
    zoo_id, job_id = disp.submit_sweep(tiny_sweep(steps=200000, checkpoints=[1, 2, 3, 200000]))
    _wait_for(lambda: len(st.list_checkpoints(zoo_id=zoo_id)) >= 4, disp)
    pid = st.get_job(job_id)["pid"]
    os.kill(pid, signal.SIGKILL)
    (job,) = disp.run_until_done([job_id])
    assert job["status"] == "failed"
    assert "killed by signal 9 (SIGKILL)" in job["error"]
    assert set(st.runs_table(zoo_id)["status"]) == {"failed"}
    for sha in st.list_checkpoints(zoo_id=zoo_id)["artifact_sha"]:
        assert st.get_tensors(sha)  # committed checkpoints are intact and verified


def test_cancelling_a_running_job(owner, tiny_sweep):
    st, disp = owner
    zoo_id, job_id = disp.submit_sweep(tiny_sweep(steps=200000, checkpoints=[1, 200000]))
    _wait_for(lambda: st.get_job(job_id)["status"] == "running" and (st.get_job(job_id)["progress"] or 0) > 0,
              disp)
    disp.cancel(job_id)
    (job,) = disp.run_until_done([job_id])
    assert job["status"] == "cancelled"
    assert set(st.runs_table(zoo_id)["status"]) == {"cancelled"}


def test_cancelling_a_queued_job_never_starts_it(owner, tiny_sweep):
    st, disp = owner
    zoo_id, job_id = disp.submit_sweep(tiny_sweep())
    disp.cancel(job_id)
    disp.tick()
    assert st.get_job(job_id)["status"] == "cancelled" and st.get_job(job_id)["pid"] is None


def test_worker_error_is_reported_with_its_message(owner, tiny_sweep):
    st, disp = owner
    zoo_id, job_id = disp.submit_sweep(tiny_sweep(batch_size=5000))
    (job,) = disp.run_until_done([job_id])
    assert job["status"] == "failed"
    assert "batch_size 5000 is larger than the training set" in job["error"]
    assert set(st.runs_table(zoo_id)["status"]) == {"failed"}


def test_invalid_spec_is_refused_before_anything_is_queued(owner, tiny_sweep):
    st, disp = owner
    with pytest.raises(ValueError, match="run_ids"):
        disp.submit("train", {"sweep": tiny_sweep().model_dump(mode="json"), "zoo_id": "z"})
    with pytest.raises(ValueError, match="unknown job kind 'bake'"):
        disp.submit("bake", {})
    unregistered = tiny_sweep(dataset={"name": "imagenet"}).model_dump(mode="json")
    with pytest.raises(ValueError, match=r"sweep\n.*base\.dataset\.name: unknown dataset 'imagenet'"):
        disp.submit("train", {"sweep": unregistered, "zoo_id": "z", "run_ids": ["a", "b"]})
    with pytest.raises(ValueError, match=r"base\.dataset\.name: unknown dataset 'imagenet'; available: .*moons"):
        disp.submit_sweep(unregistered)
    assert st.list_jobs().empty and st.list_zoos().empty  # no zoo, no runs: refused before anything was written


def test_requests_dropped_by_other_processes_are_queued(owner, tiny_sweep):
    st, disp = owner
    store.drop_request(st.path, "train_sweep", {"sweep": tiny_sweep(name="from-cli").model_dump(mode="json"),
                                                "owner": "alice"})
    disp.tick()
    jobs = st.list_jobs()
    assert len(jobs) == 1 and jobs["owner"].iloc[0] == "alice"
    assert st.get_zoo("from-cli")["owner"] == "alice"


def test_a_request_is_applied_once_even_when_the_owner_stops_while_applying_it(owner, tiny_sweep, monkeypatch):
    """Stopped mid-apply (a kill, an interrupt): the next look cannot tell whether the sweep was queued, so the
    request is set aside, not queued a second time; the requests after it are queued once each."""
    st, disp = owner
    for name in ("first", "second"):
        store.drop_request(st.path, "train_sweep", {"sweep": tiny_sweep(name=name).model_dump(mode="json")})
    submit = disp.submit_sweep

    def queue_then_stop(sweep, **kw):
        monkeypatch.setattr(disp, "submit_sweep", submit)
        submit(sweep, **kw)
        raise KeyboardInterrupt  # after the sweep was written, before its file was removed

    monkeypatch.setattr(disp, "submit_sweep", queue_then_stop)
    with pytest.raises(KeyboardInterrupt):
        disp._take_requests()
    with pytest.warns(UserWarning, match="was being applied when the store's owner stopped"):
        disp._take_requests()
    disp._take_requests()
    assert sorted(st.list_zoos()["name"]) == ["first", "second"] and len(st.list_jobs()) == 2
    assert [p.suffix for p in (st.path / "requests").iterdir()] == [".interrupted"]


def test_a_new_owner_fails_jobs_left_running_by_a_dead_one(tmp_path):
    st = store.open_store(tmp_path / "s")
    job_id = st.submit_job("train", {"x": 1}, owner="bob")
    st.update_job(job_id, status="running")
    Dispatcher(st)
    job = st.get_job(job_id)
    assert job["status"] == "failed" and "previous owner stopped" in job["error"]
    st.close()
