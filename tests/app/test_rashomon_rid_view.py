"""AppTest of the Rashomon page's RID tab: it asks the RID probe with the source's own parameters, and
shows the stored distribution beside the importance cloud with the Monte-Carlo Rashomon ratio."""

from __future__ import annotations

import json

import numpy as np
import pytest
from app_conftest import current_services
from test_rashomon_page import PAGE, SAMPLE_PARAMS, SAMPLE_URL, seed_probe

from engine.jobs.builtin_probes.convert import unpack
from engine.probes.rashomon import ImportanceDistribution, RashomonRatio
from pages.ui.rashomon_rid_views import rid_request

TAB = "Importance distribution (RID)"

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _ok(at):
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def _metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_rid_request_carries_the_source_parameters():
    kind, params, ids = rid_request(("rashomon.sample", SAMPLE_PARAMS | {"n_samples": 2000}, ()), n_bootstraps=20,
                                    epsilon=0.1)
    assert kind == "rashomon.rid_sample" and ids == []
    assert params == {"dataset": "monk1", "model": "logistic", "epsilon": 0.05, "l2": 0.001, "n_bootstraps": 20,
                      "n_samples": 300}  # the source's ε, not the tab's
    kind, params, ids = rid_request(("rashomon.population", {"split": "test"}, ("a", "b")), n_bootstraps=5,
                                    epsilon=0.1)
    assert (kind, params, ids) == ("rashomon.rid_population", {"split": "test", "epsilon": 0.1, "n_bootstraps": 5},
                                   ["a", "b"])
    assert rid_request(None, n_bootstraps=5, epsilon=0.1) is None


def test_rid_tab_queues_the_probe_of_the_sampled_class(app, trained_store):
    seed_probe(trained_store, "rashomon.sample", SAMPLE_PARAMS, ids=[])
    at = app(trained_store, page=PAGE, rs_tab=TAB, **SAMPLE_URL)
    _ok(at)
    at.button(key="rs_rid_go").click().run()
    _ok(at)
    jobs = current_services().store.list_jobs(kind="probe")
    spec = json.loads(jobs["spec_json"].iloc[0])
    assert spec["probe"] == "rashomon.rid_sample"
    assert spec["params"]["dataset"] == "monk1" and spec["params"]["n_bootstraps"] == 10


def test_rid_tab_shows_the_stored_distribution_and_the_ratio(app, trained_store):
    seed_probe(trained_store, "rashomon.sample", SAMPLE_PARAMS, ids=[])
    probe, params, ids = rid_request(("rashomon.sample", SAMPLE_PARAMS, ()), n_bootstraps=5, epsilon=0.05)
    result = seed_probe(trained_store, probe, params | {"n_samples": 300}, ids=ids)
    rid = unpack(ImportanceDistribution, result.summary, result.arrays, "rid.")
    ratio = unpack(RashomonRatio, result.summary, result.arrays, "ratio.")
    at = app(trained_store, page=PAGE, rs_tab=TAB, rs_rid_b="5", **SAMPLE_URL)
    _ok(at)
    assert _metric(at, "Bootstrap resamples") == "5"
    shown = _metric(at, "Monte-Carlo Rashomon ratio")
    assert shown == (f"< {3 / ratio.n_samples:.1e}" if ratio.n_members == 0
                     else f"{ratio.ratio:.2e} ± {ratio.standard_error:.1e}")
    table = at.dataframe[0].value  # the only one in this tab (a plain dataframe has no key in AppTest)
    assert len(table) == len(rid.feature_names)
    by_name = dict(zip(table["feature"], table["P(> 0)"]))
    np.testing.assert_allclose([by_name[n] for n in rid.feature_names], rid.prob_above)
    assert table["mean"].is_monotonic_decreasing
    at.selectbox(key="rs_rid_kind").set_value("cdf").run()
    _ok(at)
    assert at.query_params["rs_rid_kind"] == "cdf"
