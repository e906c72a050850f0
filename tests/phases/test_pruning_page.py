"""AppTest of the Phases page's Pruning tab on the tiny zoo, pruned by ``prune.cell`` beforehand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import streamlit as st
from phases_conftest import copy_store
from streamlit.testing.v1 import AppTest

import store
from engine.jobs import Dispatcher, probe_phase_cells
from engine.jobs.builtin_probes.phases import PruneCellParams

PAGE = Path(__file__).resolve().parents[2] / "pages" / "phases.py"
PARAMS = PruneCellParams(densities=(0.25, 1.0)).model_dump(mode="json")  # what the page asks for with ?pdens=0.25,1.0


@pytest.fixture(scope="module")
def pruned_store(probed_template, tmp_path_factory):
    path = copy_store(probed_template, tmp_path_factory.mktemp("pruned"))
    st_ = store.open_store(path)
    disp = Dispatcher(st_)
    try:
        zoo_id = st_.list_zoos()["zoo_id"].iloc[0]
        assert [r.status.state for r in probe_phase_cells(disp, zoo_id, "prune.cell", PARAMS, compute_here=True)] \
            == ["done", "done"]
    finally:
        disp.stop(kill_workers=True)
        st_.close()
    return path


def _page(monkeypatch, store_path, **query):
    monkeypatch.setenv(store.STORE_ENV_VAR, str(store_path))
    at = AppTest.from_file(str(PAGE), default_timeout=120)
    for k, v in query.items():
        at.query_params[k] = v
    return at.run()


@pytest.fixture
def fresh(monkeypatch):
    monkeypatch.syspath_prepend(str(PAGE.parents[1]))
    from pages.ui.services import close_services

    close_services()
    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    close_services()
    st.cache_resource.clear()
    st.cache_data.clear()


def test_pruning_tab_shows_transition_heatmaps_and_regimes(fresh, monkeypatch, pruned_store, tmp_path):
    at = _page(monkeypatch, copy_store(pruned_store, tmp_path), pdens="0.25,1.0")
    assert not at.exception, at.exception
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    titles = [f["layout"].get("title", {}).get("text") for f in figs]
    assert "test error" in titles and "top Hessian eigenvalue" in titles
    regime = [f for f in figs if "regime %{text}" in f["data"][0].get("hovertemplate", "")]
    assert len(regime) == 1
    shown = {r for row in regime[0]["data"][0]["text"] for r in row}
    assert shown and shown <= {"I", "II-A", "II-B", "?", ""}
    assert regime[0]["data"][0]["y"] == ["0.25"]  # density 1 (unpruned) has no regime
    effect = [f for f in figs if any("density 0.25" == t.get("name") for t in f["data"])]
    assert effect and {t["name"] for t in effect[0]["data"]} == {"density 0.25", "density 1"}
    table = at.dataframe[0].value
    assert list(table["density"]) == [0.25, 1.0] and set(table["effect"]) <= {"hotter helps", "hotter hurts", "flat"}
    assert any("Zhou et al. (2023)" in c.value for c in at.caption)


def test_settings_never_probed_ask_for_the_sweep(fresh, monkeypatch, pruned_store, tmp_path):
    at = _page(monkeypatch, copy_store(pruned_store, tmp_path), pdens="0.1", pft="50")
    assert not at.exception, at.exception
    assert any("No cell is pruned yet" in i.value for i in at.info)
    assert any(b.label == "Prune and probe this zoo" for b in at.button)
