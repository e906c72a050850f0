"""AppTest of the Representations page's layer grids with the tRSA measure and its bounds in the URL."""

from __future__ import annotations

import base64
import json
from uuid import uuid4

import numpy as np
import pytest

import store
from engine.jobs.builtin_probes.representations import ActivationsResult
from engine.probes.representations import similarity_grid

PAGE = "pages/representations.py"
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def seed_activations(path) -> tuple[list[str], list[str], object]:
    """Compute the activations of the last checkpoints of two runs (as the Model-vs-model tab asks
    for them) into the store at ``path`` before the app owns it; ``(run ids, checkpoint ids, result)``."""
    from engine.jobs import Dispatcher, JobContext, ProbeService
    from engine.jobs.probe_job import run_probe

    with store.open_store(path) as st_:
        disp = Dispatcher(st_)
        runs = st_.list_runs(st_.list_zoos()["zoo_id"].iloc[0], status="done")["run_id"].tolist()[:2]
        ids = [st_.list_checkpoints(r).sort_values("step")["checkpoint_id"].iloc[-1] for r in runs]
        service = ProbeService(disp)
        key, validated = service.key("representations.activations", {}, ids)
        spec = {"probe": "representations.activations", "params": validated,
                "checkpoints": [service._ref(c) for c in ids], "key": key}
        run_probe(spec, JobContext(st_.path, f"inline-{uuid4().hex[:8]}"))
        st_.ingest_bundles()
        result = service.status("representations.activations", {}, ids).result
        disp.stop(kill_workers=True)
    return runs, ids, result


def _z(heatmap: dict) -> np.ndarray:
    """A heatmap's values from its JSON (plotly writes arrays as base64 typed arrays)."""
    z = heatmap["data"][0]["z"]
    if isinstance(z, dict):
        shape = tuple(int(n) for n in str(z["shape"]).split(","))
        return np.frombuffer(base64.b64decode(z["bdata"]), dtype=np.dtype(z["dtype"])).reshape(shape)
    return np.array(z, dtype=float)


def _heatmaps(at) -> list[dict]:
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    return [s for s in specs if s["data"] and s["data"][0]["type"] == "heatmap"]


def _atol(acts) -> float:
    """How far the page's grid may be from the test's. Both correlate m = n(n-1)/2 normalised RDM
    entries built from float32 activations: a float32 rounding (eps32) per entry in how either side
    forms them, plus float64 GEMM order, moves a correlation of unit vectors by at most ~sqrt(m) eps32
    (observed here: 1.7e-9, within it)."""
    n = next(iter(acts.values())).shape[0]
    return float(np.sqrt(n * (n - 1) / 2) * np.finfo(np.float32).eps)


def test_trsa_measure_renders_a_layer_grid_with_its_bounds_from_the_url(app, trained_store):
    runs, _, result = seed_activations(trained_store)
    at = app(trained_store, page=PAGE, runs=",".join(runs), rep_metric="trsa", rep_trsa="0.1,0.3")
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert at.selectbox(key="rep_metric").value == "trsa"
    assert at.slider(key="rep_trsa").value == pytest.approx((0.1, 0.3))
    (grid_fig,) = [h for h in _heatmaps(at) if "tRSA" in h["layout"]["title"]["text"]]
    acts = ActivationsResult.from_stored(result).activations
    expected = similarity_grid(acts[0], acts[1], "trsa", lower=0.1, upper=0.3)
    np.testing.assert_allclose(_z(grid_fig), expected.values, rtol=0, atol=_atol(acts[0]))
    assert len(expected.rows) > 1  # a layer x layer grid, not a single number

    at.slider(key="rep_trsa").set_value((0.0, 1.0)).run()  # (0, 1): the transform keeps the geometry
    assert not at.exception, at.exception
    assert at.query_params["rep_trsa"] == "0,1"
    (grid_fig,) = [h for h in _heatmaps(at) if "tRSA" in h["layout"]["title"]["text"]]
    plain = similarity_grid(acts[0], acts[1], "rsa")
    np.testing.assert_allclose(_z(grid_fig), plain.values, rtol=0, atol=_atol(acts[0]))


def test_other_measures_show_no_trsa_bounds(app, trained_store):
    runs, _, _ = seed_activations(trained_store)
    at = app(trained_store, page=PAGE, runs=",".join(runs), rep_metric="rsa")
    assert not at.exception, at.exception
    assert not [s for s in at.slider if s.key == "rep_trsa"]
    assert "rep_trsa" not in at.query_params
    assert [h["layout"]["title"]["text"].split(":")[0] for h in _heatmaps(at)][:1] == ["RSA"]
