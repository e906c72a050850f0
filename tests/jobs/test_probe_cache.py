"""Probe look-ups on every page run: jobs found by key without listing them, stored results
decoded and verified once per process, and never a stale answer."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from pydantic import BaseModel, ConfigDict

import store
from engine.jobs import ProbeService, get_probe_kind, register_probe
from engine.jobs.probe_job import clear_caches


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    n: int = 1


def _never_run(inputs, params, progress):  # the tests store results themselves
    raise AssertionError("not computed in these tests")


register_probe("test.cached", _never_run, _Params, n_checkpoints=(1, 1))


def _store_result(st, key: str, values) -> str:
    sha = st.put_tensors({"v": torch.as_tensor(values)}, kind="probe")
    st.put_probe(key, "test.cached", params={"n": 1}, inputs=["ck"], artifact_sha=sha, result={"mean": 1.0})
    return sha


@pytest.fixture
def service(owner):
    clear_caches()
    st, disp = owner
    return st, disp, ProbeService(disp)


def _spec(key: str) -> dict:
    return {"probe": "test.cached", "params": {"n": 1}, "checkpoints": [], "key": key}


def test_a_done_result_is_read_once_and_shared_read_only(service, monkeypatch):
    st, _, probes = service
    key, _ = probes.key("test.cached", {}, ["ck"])
    _store_result(st, key, [1.0, 2.0])
    reads = []
    real = store.Store.get_tensors
    monkeypatch.setattr(store.Store, "get_tensors", lambda self, sha: reads.append(sha) or real(self, sha))
    first = probes.status("test.cached", {}, ["ck"])
    second = ProbeService(probes.dispatcher).status("test.cached", {"n": 1}, ["ck"])  # a new service, same owner
    assert first.state == second.state == "done" and len(reads) == 1
    assert second.result is first.result and list(first.result.arrays["v"]) == [1.0, 2.0]
    with pytest.raises(ValueError, match="read-only"):
        first.result.arrays["v"][0] = 5.0  # one session cannot change what another sees
    second.probe["owner"] = "someone"  # rows are handed out as copies
    assert probes.status("test.cached", {}, ["ck"]).probe.get("owner") != "someone"


def test_a_replaced_result_is_never_served_stale(service):
    st, _, probes = service
    key, _ = probes.key("test.cached", {}, ["ck"])
    _store_result(st, key, [1.0])
    assert list(probes.status("test.cached", {}, ["ck"]).result.arrays["v"]) == [1.0]
    st.delete_probe(key)
    assert probes.status("test.cached", {}, ["ck"]).state == "missing"
    _store_result(st, key, [3.0, 4.0])
    assert list(probes.status("test.cached", {}, ["ck"]).result.arrays["v"]) == [3.0, 4.0]


def test_status_finds_jobs_by_key_without_listing_every_job(service, monkeypatch):
    st, disp, probes = service
    key, _ = probes.key("test.cached", {}, ["ck"])
    other, _ = probes.key("test.cached", {"n": 2}, ["ck"])
    assert probes.status("test.cached", {}, ["ck"]).state == "missing"  # builds the (empty) index
    monkeypatch.setattr(store.Store, "list_jobs", lambda *a, **k: pytest.fail("status listed every job"))
    disp.submit("probe", _spec(other))
    job_id = disp.submit("probe", _spec(key))
    queued = probes.status("test.cached", {}, ["ck"])
    assert queued.state == "queued" and queued.job["job_id"] == job_id
    st.update_job(job_id, status="running", progress=0.25)  # progress does not move the generation: read live
    st.update_job(job_id, progress=0.5)
    running = probes.status("test.cached", {}, ["ck"])
    assert running.state == "running" and running.progress == 0.5
    st.update_job(job_id, status="failed", error="worker died")
    assert probes.status("test.cached", {}, ["ck"]).state == "failed"
    assert probes.status("test.cached", {"n": 2}, ["ck"]).job["job_id"] != job_id


def test_the_newest_job_of_a_key_decides(service):
    st, disp, probes = service
    key, _ = probes.key("test.cached", {}, ["ck"])
    old = disp.submit("probe", _spec(key))
    st.update_job(old, status="failed", error="first try")
    new = disp.submit("probe", _spec(key))
    status = probes.status("test.cached", {}, ["ck"])
    assert status.state == "queued" and status.job["job_id"] == new


def test_job_index_by_spec_field_is_newest_first_and_checks_the_field(owner):
    st, _ = owner
    a = st.submit_job("probe", {"key": "k1"})
    b = st.submit_job("probe", {"key": "k2"})
    c = st.submit_job("probe", {"key": "k1"})
    st.submit_job("train", {"key": "k1"})
    st.submit_job("probe", {"other": 1})
    index = st.job_ids_by_spec_field("probe", "key")
    assert index == {"k1": [c, a], "k2": [b]}
    assert [j["job_id"] for j in st.get_jobs([a, "nope", c])] == [c, a]
    with pytest.raises(ValueError, match=re.escape("spec field must be a plain identifier; got \"key') OR 1=1 --\"")):
        st.job_ids_by_spec_field("probe", "key') OR 1=1 --")


def test_result_cache_is_bounded(service, monkeypatch):
    from engine.jobs import probe_job

    st, _, probes = service
    monkeypatch.setattr(probe_job, "RESULT_CACHE_BYTES", 3 * 8 * 10)  # room for three results of 10 float64
    keys = []
    for n in range(1, 6):
        key, _ = probes.key("test.cached", {"n": n}, ["ck"])
        st.put_probe(key, "test.cached", params={"n": n}, inputs=["ck"],
                     artifact_sha=st.put_tensors({"v": torch.full((10,), float(n), dtype=torch.float64)}))
        keys.append(key)
        assert probes.status("test.cached", {"n": n}, ["ck"]).result.arrays["v"][0] == n
    cache = probe_job._cache_for(probes.dispatcher)
    assert len(cache._results) == 3 and cache._bytes == 3 * 80
    assert {stamp[0] for stamp in cache._results} == set(keys[2:])  # the least recently used went first
    assert np.all(probes.status("test.cached", {"n": 1}, ["ck"]).result.arrays["v"] == 1.0)  # read again


# The kinds whose seeded draws run over the parameters (random directions, Lanczos starts, Hutchinson probes, random
# subspaces), and their code_version before checkpoints loaded in the model's parameter order instead of the file's.
BEFORE_MODEL_ORDER = {"landscape.surface": "2", "curvature.spectrum": "1", "curvature.sharpness": "1",
                      "curvature.per_layer": "1", "landscape.intrinsic_dimension": "1", "sweep.cell": "1",
                      "prune.cell": "1"}


@pytest.mark.parametrize("kind, old_version", sorted(BEFORE_MODEL_ORDER.items()))
def test_a_seeded_result_stored_before_checkpoints_loaded_in_model_order_is_not_served(service, kind, old_version):
    """Its draws followed another parameter order: asked again, it is computed again, not read back."""
    st, _, probes = service
    ids = ["ck-a", "ck-b"][: get_probe_kind(kind).n_checkpoints[0]]
    _, params = probes.key(kind, {}, ids)
    stale = store.probe_key(kind, params, ids, old_version)
    sha = st.put_tensors({"v": torch.zeros(1)}, kind="probe")
    st.put_probe(stale, kind, params=params, inputs=ids, artifact_sha=sha, result={}, code_version=old_version)
    assert probes.status(kind, params, ids).state == "missing"
