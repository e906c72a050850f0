"""AppTests of issue 17's Landscape views: curvature per layer (queued over the run, drawn at the picked
checkpoint and through training beside 2/η), and a 2D surface's topology and plane distances."""

from __future__ import annotations

import json

import pytest
from app_conftest import current_services

import store

PAGE = "pages/landscape.py"
PCA_PARAMS = {"directions": "pca", "ndim": 2, "resolution": 11, "span": 1.0, "split": "train"}

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def seed(path, probe: str, params: dict, *, last_only: bool = False) -> tuple[str, list[str], list[int]]:
    """Compute ``probe`` over the first finished run's checkpoints in this process, before the app owns the store."""
    from engine.jobs import Dispatcher, ProbeService

    with store.open_store(path) as st_:
        disp = Dispatcher(st_)
        zoo_id = st_.list_zoos()["zoo_id"].iloc[0]
        run_id = st_.runs_table(zoo_id)["run_id"].iloc[0]
        ckpts = st_.list_checkpoints(run_id).sort_values("step")
        ids = ckpts["checkpoint_id"].tolist()
        done = ProbeService(disp).compute_here(probe, params, ids[-1:] if last_only else ids)
        assert done.state == "done", done
        disp.stop(kill_workers=True)
    return run_id, ids, ckpts["step"].tolist()


def _ok(at):
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def _titles(at) -> list[str]:
    return [json.loads(c.proto.spec)["layout"]["title"]["text"] for c in at.get("plotly_chart")]


def test_the_per_layer_tab_queues_the_probe_over_every_checkpoint(app, trained_store):
    at = app(trained_store, page=PAGE)
    _ok(at)
    assert at.selectbox(key="pl_level").value == "layer"
    at.button(key="per_layer_go").click().run()
    _ok(at)
    specs = [json.loads(s) for s in current_services().store.list_jobs(kind="probe")["spec_json"]]
    (spec,) = [s for s in specs if s["probe"] == "curvature.per_layer"]
    run_id = at.selectbox(key="run").value
    assert spec["params"]["level"] == "layer" and spec["params"]["n_samples"] == 1000
    assert len(spec["checkpoints"]) == len(current_services().store.list_checkpoints(run_id))


def test_a_stored_per_layer_result_draws_bars_at_the_checkpoint_and_lines_with_two_over_eta(app, trained_store):
    run_id, ids, steps = seed(trained_store, "curvature.per_layer", {"level": "layer", "n_samples": 1000})
    at = app(trained_store, page=PAGE, run=run_id)
    _ok(at)
    titles = _titles(at)
    assert f"Curvature per layer at step {steps[-1]}" in titles  # the picked (last) checkpoint
    assert "Top eigenvalue per layer over training" in titles
    lines = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
                 if json.loads(c.proto.spec)["layout"]["title"]["text"] == "Top eigenvalue per layer over training")
    assert lines["data"][-1]["name"] == "2 / η (edge of stability)"
    assert any("Hutchinson" in c.value and "2/η" in c.value for c in at.caption)
    at.selectbox(key="ckpt").set_value(ids[0]).run()
    _ok(at)
    assert f"Curvature per layer at step {steps[0]}" in _titles(at)
    at.selectbox(key="pl_q").set_value("trace").run()
    _ok(at)
    assert "Trace per layer over training" in _titles(at)
    assert at.query_params["pl_q"] in ("trace", ["trace"])


def test_a_pca_surface_shows_its_distance_off_the_plane_and_its_topology(app, trained_store):
    run_id, ids, _ = seed(trained_store, "landscape.surface", PCA_PARAMS)
    at = app(trained_store, page=PAGE, run=run_id, ls_dir="pca", ls_res="11")
    _ok(at)
    titles = _titles(at)
    assert any(t.startswith("Trajectory vs the plane: the plane explains ") for t in titles)
    assert any(t.startswith("Topology of the surface: ") for t in titles)
    assert any(c.value.startswith("The plane explains ") and "not of the checkpoint" in c.value for c in at.caption)
    assert any("Sublevel-set persistence" in c.value for c in at.caption)
    # the basin threshold: every basin at 0%, fewer (at least the global one) at 50% of the loss range
    count = {}
    for share in (0.0, 0.5):
        at.select_slider(key="ls_basin").set_value(share).run()
        _ok(at)
        (title,) = [t for t in _titles(at) if t.startswith("Topology of the surface: ")]
        count[share] = int(title.split(": ")[1].split(" ")[0])
    assert 1 <= count[0.5] <= count[0.0]
    assert at.query_params["ls_basin"] in ("0.5", ["0.5"])


def test_a_random_direction_surface_has_topology_but_no_plane(app, trained_store):
    params = {"directions": "filter", "ndim": 2, "resolution": 11, "span": 1.0, "split": "train"}
    run_id, _, _ = seed(trained_store, "landscape.surface", params, last_only=True)
    at = app(trained_store, page=PAGE, run=run_id, ls_res="11", ls_basin="0.05")
    _ok(at)
    titles = _titles(at)
    assert not any(t.startswith("Trajectory vs the plane") for t in titles)
    assert any(t.startswith("Topology of the surface: ") and "deeper than" in t for t in titles)
    assert at.select_slider(key="ls_basin").value == 0.05
