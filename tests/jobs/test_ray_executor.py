"""The Ray executor: a sweep trained through Ray tasks lands in the store exactly as through local workers.

Ray runs here as a local instance started by the test (two CPUs, no dashboard); the store
folder is on this machine, which is what "shared storage" means for a one-node cluster.
"""

from __future__ import annotations

import builtins
import os
import threading
import time

import pytest

import store
from engine.jobs import Dispatcher, LocalExecutor, ProbeService
from engine.jobs.executors import make_executor
from engine.settings import Settings

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]' (make test installs it)")

from engine.jobs.executors.ray import RayExecutor  # noqa: E402


def test_ray_started_from_a_short_lived_thread_outlives_it(tmp_path):
    """The dashboard builds its executor in a script-run thread that ends after the run; the local
    Ray instance it starts must not die with that thread (Linux's parent-death signal is per thread)."""
    assert not ray.is_initialized()  # this test starts its own instance (before the module's one)
    made = {}
    thread = threading.Thread(target=lambda: made.setdefault("ex", RayExecutor(tmp_path, address="local")))
    thread.start()
    thread.join()
    time.sleep(1.0)
    try:
        pid = ray.remote(lambda: os.getpid())  # a lambda travels by value (this module is not on workers' path)
        assert ray.get(pid.remote(), timeout=30) != os.getpid()
    finally:
        made["ex"].shutdown()  # it started Ray, so it stops it
    assert not ray.is_initialized()


@pytest.fixture(scope="module")
def ray_instance():
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _train(folder, executor_factory, sweep):
    """Train ``sweep`` into a new store at ``folder``; returns (runs, checkpoints, metrics, job) DataFrames."""
    st = store.open_store(folder)
    disp = Dispatcher(st, executor=executor_factory(st.path))
    try:
        zoo_id, job_id = disp.submit_sweep(sweep)
        (job,) = disp.run_until_done([job_id], poll_s=0.1)
        runs = st.list_runs(zoo_id)
        ckpts = st.list_checkpoints(zoo_id=zoo_id)
        metrics = st.metrics(zoo_id=zoo_id)
        return runs, ckpts, metrics, job
    finally:
        disp.stop(kill_workers=True)
        st.close()


@pytest.fixture
def both_stores(ray_instance, tmp_path, tiny_sweep):
    sweep = tiny_sweep()
    local = _train(tmp_path / "local", lambda p: LocalExecutor(p, max_workers=1), sweep)
    remote = _train(tmp_path / "ray", lambda p: RayExecutor(p, max_workers=2), sweep)
    return local, remote, tmp_path


def _by_seed(runs, table, columns):
    seeds = runs.set_index("run_id")["seed"]
    out = table.assign(seed=table["run_id"].map(seeds)).drop(columns=["run_id"])
    return out.sort_values(columns).reset_index(drop=True)


def test_a_sweep_trained_through_ray_lands_like_the_local_one(both_stores):
    (l_runs, l_ckpts, l_metrics, l_job), (r_runs, r_ckpts, r_metrics, r_job), _ = both_stores
    assert l_job["status"] == r_job["status"] == "done", (l_job["error"], r_job["error"])
    assert r_job["pid"] is None  # a Ray task is not a process on the owner's machine
    assert sorted(l_runs["seed"]) == sorted(r_runs["seed"]) == [0, 1]
    assert set(r_runs["status"]) == {"done"}
    assert len(r_ckpts) == len(l_ckpts) == 8 and len(r_metrics) == len(l_metrics) > 0

    keys = ["seed", "step", "split", "name"]
    lm, rm = _by_seed(l_runs, l_metrics, keys), _by_seed(r_runs, r_metrics, keys)
    assert lm[keys].equals(rm[keys])
    assert rm["value"].tolist() == pytest.approx(lm["value"].tolist(), abs=1e-6, nan_ok=True)

    # Training is deterministic across executors: the same seeds give bit-identical weights,
    # so the content-addressed checkpoints have the same hashes.
    cols = ["seed", "step"]
    lc, rc = _by_seed(l_runs, l_ckpts, cols), _by_seed(r_runs, r_ckpts, cols)
    assert lc[cols].equals(rc[cols])
    assert rc["artifact_sha"].tolist() == lc["artifact_sha"].tolist()
    for name in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert rc[name].tolist() == pytest.approx(lc[name].tolist(), abs=1e-6)

    root = both_stores[2]
    with store.open_store(root / "ray", owner=False) as st:
        for sha in r_ckpts["artifact_sha"]:
            assert st.get_tensors(sha)  # written by a Ray worker; its hash is checked on read
        assert not list((st.path / "inbox").glob("*/part-*"))  # every bundle ingested


@pytest.fixture
def ray_owner(ray_instance, tmp_path):
    st = store.open_store(tmp_path / "store")
    disp = Dispatcher(st, executor=RayExecutor(st.path, max_workers=2))
    yield st, disp
    disp.stop(kill_workers=True)
    st.close()


def test_a_probe_job_runs_as_a_ray_task(ray_owner, tiny_sweep):
    st, disp = ray_owner
    zoo_id, job_id = disp.submit_sweep(tiny_sweep(steps=10, checkpoints=[10]))
    disp.run_until_done([job_id], poll_s=0.1)
    final = st.list_checkpoints(zoo_id=zoo_id).query("step == 10")["checkpoint_id"].tolist()
    probes = ProbeService(disp)
    first = probes.request("evaluate", {"split": "test"}, final)
    (job,) = disp.run_until_done([first.job["job_id"]], poll_s=0.1)
    assert job["status"] == "done", job["error"]
    done = probes.request("evaluate", {"split": "test"}, final)
    runs = st.runs_table(zoo_id).set_index("last_checkpoint_id").loc[final]
    assert done.state == "done"
    assert done.result.summary["accuracy"] == pytest.approx(runs["final_test_acc"].tolist(), abs=1e-6)


def _wait_running(st, disp, job_id, timeout=120.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        disp.tick()
        job = st.get_job(job_id)
        if job["status"] == "running" and (job["progress"] or 0) > 0:
            return
        time.sleep(0.1)
    raise AssertionError(f"job {job_id} did not start making progress within {timeout} s")


def test_cancel_file_and_kill_stop_ray_tasks(ray_owner, tiny_sweep):
    st, disp = ray_owner
    endless = tiny_sweep(steps=200000, checkpoints=[1, 200000])
    _, cancelled = disp.submit_sweep(endless, owner="alice")  # two owners: both may run at once
    _, killed = disp.submit_sweep(endless.model_copy(update={"name": "killed"}), owner="bob")
    _wait_running(st, disp, cancelled)
    _wait_running(st, disp, killed)
    disp.cancel(cancelled)  # the job's cancel file, read by the job on shared storage
    disp.executor.kill(killed)  # ray.cancel(force=True): the worker process dies
    jobs = {j["job_id"]: j for j in disp.run_until_done([cancelled, killed], poll_s=0.1)}
    assert jobs[cancelled]["status"] == "cancelled"
    assert jobs[killed]["status"] == "failed" and "Ray task was cancelled" in jobs[killed]["error"]
    assert disp.executor.free_slots == 2


def test_make_executor_selects_ray_from_settings(ray_instance, tmp_path, monkeypatch):
    monkeypatch.delenv("ZOOSCOPE_CONFIG", raising=False)
    monkeypatch.delenv("ZOOSCOPE_WORKERS", raising=False)
    monkeypatch.setenv("ZOOSCOPE_EXECUTOR", "ray")
    (tmp_path / "zooscope.toml").write_text("[jobs]\nray_num_cpus = 0.5\n")
    ex = make_executor(tmp_path)
    assert isinstance(ex, RayExecutor) and (ex.num_cpus, ex.num_gpus) == (0.5, 0.0)
    assert ex.max_workers == 4  # workers not set: as many half-CPU tasks as the two CPUs hold
    for workers in (3, 0):  # named in the settings: that many at once (0 holds the queue)
        (tmp_path / "zooscope.toml").write_text(f"[jobs]\nworkers = {workers}\n")
        assert make_executor(tmp_path).max_workers == workers


def test_make_executor_without_ray_says_how_to_install_it(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, globals=None, locals=None, fromlist=(), level=0):
        # only the top-level package: ``from .ray import ...`` (engine.jobs.executors.ray) is ours
        if level == 0 and (name == "ray" or name.startswith("ray.")):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, globals, locals, fromlist, level)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    settings = Settings.model_validate({"jobs": {"executor": "ray"}})
    with pytest.raises(ImportError, match=r"pip install zooscope\[ray\]"):
        make_executor(tmp_path, settings)
