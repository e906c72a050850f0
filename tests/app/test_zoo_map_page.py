"""AppTest of the Zoo map page: the compute button queues the missing pairs; stored pairs draw the map,
its merge tree and the clusters; a cluster selects its runs for the other pages and a pair links to
Connectivity; the Through-training tab draws every run's path."""

from __future__ import annotations

import json

import pytest
from app_conftest import shown

import store
from engine.jobs import Dispatcher, ProbeService
from engine.jobs.zoo import request_zoo_map, zoo_models

PAGE = "pages/zoo_map.py"
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py
METRICS = ("weight", "barrier", "cka", "procrustes", "disagreement")


def seed_map(path, *, every: bool = False, metrics=METRICS) -> list:
    """Compute the map's pairs into the store at ``path`` before the app owns it; returns the models."""
    with store.open_store(path) as st_:
        disp = Dispatcher(st_)
        zoo_id = st_.list_zoos()["zoo_id"].iloc[0]
        models = zoo_models(st_, zoo_id, every_checkpoint=every)
        status = request_zoo_map(ProbeService(disp), models, metrics, {"align": "weight"}, compute_here=True)
        assert status.complete, status
        disp.stop(kill_workers=True)
    return models


def _specs(at) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def test_without_stored_pairs_the_page_offers_to_compute_them(app, trained_store):
    at = app(trained_store, PAGE)
    assert not at.exception
    button = next(b for b in at.button if "missing distances" in b.label)
    assert "Compute the" in button.label
    button.click().run()
    assert not at.exception  # the page reran with the job queued (no workers under AppTest)
    assert any("being computed" in c.value and not c.value.endswith("0 being computed.") for c in at.caption)


def test_stored_pairs_draw_the_map_tree_and_clusters(app, trained_store):
    models = seed_map(trained_store)
    at = app(trained_store, PAGE, zm_metric="barrier")
    assert not at.exception
    specs = _specs(at)
    assert len(specs) >= 2  # the map and the merge tree
    scatter = specs[0]["data"]
    assert sum(len(t["x"]) if isinstance(t["x"], list) else 1 for t in scatter) >= 1
    assert any("max_minus_linear" in shown(c.value) for c in at.caption)
    assert any("clusters at" in c.value for c in at.caption)
    # a cluster selects its runs for every page (?runs=) and the pair opens on Connectivity
    at.button(key="zm_pick_cluster").click().run()
    assert not at.exception
    runs = at.query_params.get("runs")
    assert runs, "selecting a cluster sets ?runs="
    picked = runs[0].split(",") if isinstance(runs, list) else runs.split(",")
    assert set(picked) <= {m.run_id for m in models}
    if len(picked) >= 2:
        assert any("./connectivity?" in m.value and ",".join(picked[:2]) in m.value for m in at.markdown)


@pytest.mark.parametrize("metric", METRICS)
def test_every_distance_draws(app, trained_store, metric):
    seed_map(trained_store)
    at = app(trained_store, PAGE, zm_metric=metric)
    assert not at.exception
    assert len(_specs(at)) >= 2


def test_through_training_draws_a_path_per_run(app, trained_store):
    models = seed_map(trained_store, every=True, metrics=("cka",))
    at = app(trained_store, PAGE)
    assert not at.exception
    paths = [s for s in _specs(at) if any(t.get("mode") == "lines+markers" for t in s["data"])]
    assert paths, "the Through-training tab shows one path per run"
    n_runs = len({m.run_id for m in models})
    assert sum(t.get("mode") == "lines+markers" for t in paths[0]["data"]) == min(n_runs, 4)
