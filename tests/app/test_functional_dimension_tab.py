"""AppTest of the Landscape page's functional-dimension tab: queuing a run's probe, drawing a stored
result (rank over training, the scree at the picked checkpoint), and the zoo view across runs."""

from __future__ import annotations

import json
from uuid import uuid4

import pytest
from app_conftest import current_services

import store

PAGE = "pages/landscape.py"
PROBE = "landscape.functional_dimension"
PARAMS = {"inputs": "gaussian", "oversample": 2.0}

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def seed_run_probe(path) -> tuple[str, list[str]]:
    """Compute the probe for the first finished run in this process, before the app owns the store."""
    from engine.jobs import Dispatcher, JobContext, ProbeService
    from engine.jobs.probe_job import run_probe

    with store.open_store(path) as st_:
        disp = Dispatcher(st_)
        zoo_id = st_.list_zoos()["zoo_id"].iloc[0]
        run_id = st_.runs_table(zoo_id)["run_id"].iloc[0]
        ids = st_.list_checkpoints(run_id).sort_values("step")["checkpoint_id"].tolist()
        service = ProbeService(disp)
        key, validated = service.key(PROBE, PARAMS, ids)
        spec = {"probe": PROBE, "params": validated, "checkpoints": [service._ref(c) for c in ids], "key": key}
        run_probe(spec, JobContext(st_.path, f"inline-{uuid4().hex[:8]}"))
        st_.ingest_bundles()
        disp.stop(kill_workers=True)
    return run_id, ids


def _ok(at):
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def _queued_specs() -> list[dict]:
    return [json.loads(s) for s in current_services().store.list_jobs(kind="probe")["spec_json"]]


def test_the_tab_queues_the_probe_over_every_checkpoint_of_the_run(app, trained_store):
    at = app(trained_store, page=PAGE)
    _ok(at)
    assert at.selectbox(key="fd_inputs").value == "gaussian"
    assert at.selectbox(key="fd_over").value == 2.0
    assert any("No run of this zoo has a stored functional dimension" in i.value for i in at.info)
    at.button(key="fdim_go").click().run()
    _ok(at)
    (spec,) = _queued_specs()
    run_id = at.selectbox(key="run").value
    n_ckpts = len(current_services().store.list_checkpoints(run_id))
    assert spec["probe"] == PROBE and spec["params"] == {**PARAMS, "split": "train", "seed": 0}
    assert len(spec["checkpoints"]) == n_ckpts and {c["run_id"] for c in spec["checkpoints"]} == {run_id}


def test_a_stored_result_draws_the_curve_the_scree_and_the_zoo_view(app, trained_store):
    run_id, ids = seed_run_probe(trained_store)
    at = app(trained_store, page=PAGE, run=run_id)
    _ok(at)
    charts = at.get("plotly_chart")
    assert len(charts) >= 3  # over training, scree, across runs (and no other tab computed anything)
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in charts]
    assert any(t.startswith("Functional dimension over training") for t in titles)
    assert any(t.startswith("Jacobian scree at step 60") for t in titles)  # the picked (last) checkpoint
    assert any(t.startswith("Functional dimension across runs (1 runs)") for t in titles)
    assert any("positive scalings" in c.value for c in at.caption)
    assert any("1 of 4 runs measured" in c.value for c in at.caption)
    at.selectbox(key="ckpt").set_value(ids[0]).run()  # the scree follows the picked checkpoint
    _ok(at)
    titles = [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]
    assert any(t.startswith("Jacobian scree at step 0") for t in titles)


def test_the_zoo_view_queues_the_runs_without_a_result(app, trained_store):
    run_id, _ = seed_run_probe(trained_store)
    at = app(trained_store, page=PAGE, run=run_id)
    _ok(at)
    assert at.button(key="fdim_zoo_go").label == "Compute for the other 3 runs"
    at.button(key="fdim_zoo_go").click().run()
    _ok(at)
    specs = _queued_specs()
    assert len(specs) == 3 and {s["probe"] for s in specs} == {PROBE}
    assert run_id not in {s["checkpoints"][0]["run_id"] for s in specs}
    assert all(s["params"]["inputs"] == "gaussian" for s in specs)


def test_the_inputs_choice_is_kept_in_the_url(app, trained_store):
    at = app(trained_store, page=PAGE, fd_inputs="data")
    _ok(at)
    assert at.selectbox(key="fd_inputs").value == "data"
    at.selectbox(key="fd_over").set_value(4.0).run()
    _ok(at)
    assert at.query_params["fd_over"] in ("4.0", ["4.0"])
