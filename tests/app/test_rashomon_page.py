"""AppTest of the Rashomon page: guards, queuing, and the ε slider over stored results of each source."""

from __future__ import annotations

from uuid import uuid4

import numpy as np
import pytest
from app_conftest import ARTIFACTS, current_services

import store

PAGE = "pages/rashomon.py"
SAMPLE_URL = {"rs_src": "sample", "rs_data": "monk1", "rs_model": "logistic", "rs_eps_s": "0.05", "rs_n": "500",
              "rs_l2": "0.001"}
SAMPLE_PARAMS = {"dataset": "monk1", "model": "logistic", "epsilon": 0.05, "n_samples": 500, "l2": 0.001}
TREES_URL = {"rs_src": "trees", "rs_tdata": "monk1", "rs_reg": "0.05", "rs_mult": "0.05", "rs_depth": "3",
             "rs_fit": "train"}
TREES_PARAMS = {"dataset": "monk1", "regularization": 0.05, "rashomon_multiplier": 0.05, "fit_on": "train",
                "depth_budget": 3}

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def seed_probe(path, probe: str, params: dict, ids=None) -> tuple[store.Store, dict]:
    """Compute a probe in this process into the store at ``path`` (before the app owns it); returns its result.

    ``ids=None`` takes the final checkpoints of the store's zoo, as the page does.
    """
    from engine.jobs import Dispatcher, JobContext, ProbeService
    from engine.jobs.probe_job import run_probe
    from pages.ui.rashomon_model import population_ids
    from pages.ui.reads import zoo_checkpoint_table

    with store.open_store(path) as st_:
        disp = Dispatcher(st_)
        if ids is None:
            zoo_id = st_.list_zoos()["zoo_id"].iloc[0]
            ids = population_ids(zoo_checkpoint_table(st_, zoo_id), "final")["checkpoint_id"].tolist()
        service = ProbeService(disp)
        key, validated = service.key(probe, params, ids)
        spec = {"probe": probe, "params": validated, "checkpoints": [service._ref(c) for c in ids], "key": key}
        run_probe(spec, JobContext(st_.path, f"inline-{uuid4().hex[:8]}"))
        st_.ingest_bundles()
        result = service.status(probe, params, ids).result
        disp.stop(kill_workers=True)
    return result


def open_tab(at, label: str) -> None:
    """Open a panel tab as a link would (``?rs_tab=``; only the open tab is drawn)."""
    at.query_params["rs_tab"] = label
    at.run()


def _metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def _ok(at):
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


# -- guards and queuing ----------------------------------------------------------------------------------

def test_empty_store_offers_a_sampled_class_and_guards_the_zoo_source(app, empty_store):
    at = app(empty_store, page=PAGE)
    _ok(at)
    assert at.title[0].value == "Rashomon sets"
    assert at.selectbox(key="rs_src").value == "sample"
    assert at.button(key="rs_sample_go").label.startswith("Sample 1000 candidates")
    at.selectbox(key="rs_src").set_value("zoo").run()
    _ok(at)
    assert any("No zoo yet" in i.value for i in at.info)
    at.selectbox(key="rs_src").set_value("trees").run()
    _ok(at)
    assert "TreeFARMS" in at.button(key="rs_trees_go").label


def test_compute_queues_one_population_probe_of_the_final_checkpoints(app, trained_store):
    at = app(trained_store, page=PAGE)
    _ok(at)
    assert at.selectbox(key="rs_src").value == "zoo"
    assert not at.metric  # nothing computed yet: no numbers
    at.button(key="rs_pop_go").click().run()
    _ok(at)
    jobs = current_services().store.list_jobs(kind="probe")
    assert len(jobs) == 1 and jobs["status"].iloc[0] == "queued"  # no worker slots in tests
    spec = __import__("json").loads(jobs["spec_json"].iloc[0])
    assert spec["probe"] == "rashomon.population" and len(spec["checkpoints"]) == 4
    assert {c["step"] for c in spec["checkpoints"]} == {60}  # each run's final checkpoint


# -- seeded stores: the ε slider ---------------------------------------------------------------------------

def test_eps_slider_changes_the_member_count_as_rashomon_set_does(app, trained_store):
    from engine.probes.rashomon import rashomon_set

    result = seed_probe(trained_store, "rashomon.population", {"split": "test"})
    losses = result.arrays["loss"]
    at = app(trained_store, page=PAGE, eps="0")
    _ok(at)
    assert _metric(at, "Models in the set") == f"{int(np.sum(losses == losses.min()))} of 4"
    slider = at.slider(key="rs_eps")
    for eps in (slider.min, (slider.min + slider.max) / 2, slider.max):
        at.slider(key="rs_eps").set_value(eps).run()
        _ok(at)
        expected = rashomon_set(losses, epsilon=at.slider(key="rs_eps").value, mode="relative").size
        assert _metric(at, "Models in the set") == f"{expected} of 4"
    assert _metric(at, "Models in the set") == "4 of 4"  # the range ends at the worst model
    assert float(at.query_params["eps"]) == pytest.approx(slider.max)
    at.selectbox(key="rs_mode").set_value("absolute").run()
    _ok(at)
    assert at.query_params["rs_mode"] == "absolute"
    at.selectbox(key="rs_metric").set_value("test error (1 − accuracy)").run()
    _ok(at)
    assert any("members" in m.value or "model" in m.value for m in at.markdown)


def test_a_shared_link_restores_source_and_eps(app, trained_store):
    seed_probe(trained_store, "rashomon.population", {"split": "test"})
    at = app(trained_store, page=PAGE, rs_src="zoo", rs_mode="absolute", eps="0.02")
    _ok(at)
    assert at.selectbox(key="rs_mode").value == "absolute"
    assert at.slider(key="rs_eps").value == pytest.approx(0.02)


def test_sampled_class_panels(app, trained_store):
    sample = seed_probe(trained_store, "rashomon.sample", SAMPLE_PARAMS, ids=[])
    n = len(sample.arrays["objective"])
    at = app(trained_store, page=PAGE, rs_tab="Interactions (FIS)", **SAMPLE_URL)
    _ok(at)
    assert _metric(at, "Models in the set") == f"{n} of {n}"  # starts at the whole sampled set
    assert at.slider(key="rs_eps").max == pytest.approx(0.05, abs=1e-3)
    assert at.selectbox(key="rs_pair_fis").options  # the open tab: the FIS halo picker
    assert "rs_vic_kind" not in [s.key for s in at.selectbox]  # closed tabs are not drawn
    at.slider(key="rs_eps").set_value(0.0).run()
    _ok(at)
    assert _metric(at, "Models in the set") == f"1 of {n}"  # only the optimum
    # AppTest cannot click a tab: open each one by link, as a shared URL would
    at = app(trained_store, page=PAGE, rs_tab="Importance cloud", **SAMPLE_URL)
    _ok(at)
    mcr = at.dataframe[0].value  # the model class reliance table (a plain dataframe has no key in AppTest)
    assert len(mcr) == 11 and (mcr["MCR− (min)"] <= mcr["MCR+ (max)"]).all()
    at = app(trained_store, page=PAGE, eps="0", **SAMPLE_URL)
    _ok(at)
    assert _metric(at, "Ambiguity") == "0.0%"  # the multiplicity tab, first; one model: nothing to disagree with


def test_tree_set_browser(app, trained_store):
    pytest.importorskip("treefarms")
    result = seed_probe(trained_store, "rashomon.trees", TREES_PARAMS, ids=[])
    at = app(trained_store, page=PAGE, rs_tab="Tree browser", **TREES_URL)
    _ok(at)
    size = result.summary["n_models"]
    assert _metric(at, "Models in the set") == f"{size} of {size}"  # the slider starts at the multiplier
    trees = at.dataframe(key="rs_tlist").value
    assert len(trees) == size and trees["objective"].is_monotonic_increasing
    assert any("dropped after recomputing" in c.value for c in at.caption)
    assert at.code[0].value.startswith("IF ")  # the first tree's rules


# -- a real browser: the slider and the linked selection --------------------------------------------------

def _wait_idle(page, timeout: float = 90.0) -> None:
    import time

    page.wait_for_selector("h1", timeout=timeout * 1000)
    deadline, quiet = time.monotonic() + timeout, 0
    while quiet < 3:
        assert time.monotonic() < deadline, f"the app was still running after {timeout} s"
        quiet = quiet + 1 if page.locator("[data-testid=stStatusWidget]").count() == 0 else 0
        time.sleep(0.2)


def _wait_text(page, pattern: str, timeout: float = 60.0) -> str:
    import re
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, page.locator("body").inner_text())
        if match:
            return match.group(0)
        time.sleep(0.3)
    raise AssertionError(f"{pattern!r} did not appear within {timeout} s")


@pytest.mark.browser
def test_slider_and_scatter_selection_in_a_browser(serve, browser, trained_store):

    seed_probe(trained_store, "rashomon.sample", SAMPLE_PARAMS, ids=[])
    server = serve(trained_store)
    page = browser.new_page(viewport={"width": 1400, "height": 1700})
    try:
        query = "&".join(f"{k}={v}" for k, v in SAMPLE_URL.items())
        page.goto(f"{server.url}/rashomon?{query}")
        _wait_idle(page)
        whole = _wait_text(page, r"Models in the set\s+(\d+) of \1")  # the whole sampled set
        page.get_by_role("slider").first.focus()
        for _ in range(30):  # the keyboard moves ε down by steps; the fragment reruns
            page.keyboard.press("ArrowLeft")
        _wait_idle(page)
        fewer = _wait_text(page, r"Models in the set\s+\d+ of \d+")
        assert fewer != whole, (whole, fewer)
        assert "eps=0.04" in page.url or "eps=0.03" in page.url, page.url
        chart = page.locator("[data-testid=stPlotlyChart]").first.locator(".nsewdrag").first.bounding_box()
        page.mouse.move(chart["x"] + 2, chart["y"] + 2)
        page.mouse.down()
        page.mouse.move(chart["x"] + chart["width"] * 0.5, chart["y"] + chart["height"] - 2, steps=8)
        page.mouse.up()
        _wait_text(page, r"show the \d+ models? selected in the scatter")
        _wait_idle(page)
        assert not page.locator("[data-testid=stException]").count()
        page.screenshot(path=str(ARTIFACTS / "rashomon-sampled-selection.png"), full_page=True)
    finally:
        page.close()
