"""AppTest of the Phases page (run as its own script: app.py lists the pages)."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
import streamlit as st
from phases_conftest import copy_store
from streamlit.testing.v1 import AppTest

import store

PAGE = Path(__file__).resolve().parents[2] / "pages" / "phases.py"


@pytest.fixture
def page(monkeypatch):
    monkeypatch.syspath_prepend(str(PAGE.parents[1]))
    from pages.ui.services import close_services

    close_services()
    st.cache_resource.clear()
    st.cache_data.clear()

    def make(store_path, **query):
        monkeypatch.setenv(store.STORE_ENV_VAR, str(store_path))
        at = AppTest.from_file(str(PAGE), default_timeout=90)
        for k, v in query.items():
            at.query_params[k] = v
        return at.run()

    yield make
    close_services()  # the owner services live for the process: close them as a stopping server does
    st.cache_resource.clear()
    st.cache_data.clear()


def _links(at) -> dict[str, dict[str, list[str]]]:
    out = {}
    for m in at.markdown:
        for part in m.value.split(" · "):
            if "](./" in part:
                url = part.split("](", 1)[1].rstrip(")")
                parsed = urlparse(url)
                out[parsed.path.removeprefix("./")] = parse_qs(parsed.query)
    return out


def test_empty_store_says_what_to_do(page, tmp_path):
    at = page(tmp_path / "empty")
    assert not at.exception
    assert any("Train or import a zoo first" in i.value for i in at.info)


def test_probed_zoo_shows_heatmaps_phase_map_and_links(page, probed_template, tmp_path):
    at = page(copy_store(probed_template, tmp_path))
    assert not at.exception, at.exception
    charts = at.get("plotly_chart")
    figs = [json.loads(c.proto.spec) for c in charts]
    titles = [f["layout"].get("title", {}).get("text") for f in figs]
    assert "top Hessian eigenvalue (sharpness)" in titles and "loss barrier between seeds, weight matching" in titles
    phase = [f for f in figs if f["data"][0].get("hovertemplate", "").find("phase %{text}") >= 0]
    shown = {p for row in phase[0]["data"][0]["text"] for p in row} if len(phase) == 1 else None
    assert shown is not None and shown <= {"I", "II", "III", "IV-A", "IV-B", "?", ""}
    assert len(figs) >= 8  # heatmaps of every metric + the phase map
    # the chosen cell's runs, preset on the other pages
    with store.open_store(copy_store(probed_template, tmp_path / "read"), owner=False) as s:
        zoo_id = s.list_zoos()["zoo_id"].iloc[0]
        runs = s.runs_table(zoo_id)
    links = _links(at)
    assert set(links) == {"landscape", "connectivity", "representations"}
    first_cell = runs[runs["hp_lr"] == 0.05].sort_values(["seed", "run_id"])["run_id"].tolist()
    assert links["landscape"]["run"] == [first_cell[0]] and links["landscape"]["zoo"] == [zoo_id]
    assert links["connectivity"]["runs"] == [",".join(first_cell[:2])]
    assert links["representations"]["run"] == [first_cell[0]]
    # user text (the zoo's name holds a <script> tag) is never passed through as HTML
    assert all("<script>" not in m.value for m in list(at.markdown) + list(at.caption))
    assert all("<script>" not in c.proto.spec for c in charts)


def test_cell_from_the_url_and_threshold_moves_labels(page, probed_template, tmp_path):
    at = page(copy_store(probed_template, tmp_path), cell="1")
    assert not at.exception
    with store.open_store(copy_store(probed_template, tmp_path / "read"), owner=False) as s:
        runs = s.runs_table(s.list_zoos()["zoo_id"].iloc[0])
    second = runs[runs["hp_lr"] == 0.2].sort_values(["seed", "run_id"])["run_id"].tolist()
    assert _links(at)["landscape"]["run"] == [second[0]]
    at.number_input(key="ph_cut_hessian_top").set_value(1e9).run()  # nothing is sharp above 1e9
    assert all(not c.value.startswith("sharp:") or "hessian_top > 1e+09" in c.value for c in at.caption)
    assert "sharp · " not in at.selectbox(key="ph_cell").format_func(0)


def test_grokking_tab_on_a_modular_zoo(page, modular_template, tmp_path):
    path = copy_store(modular_template, tmp_path)
    at = page(path)
    assert not at.exception, at.exception
    at.run()  # the weight-norm probe was queued on the first run (cheap, automatic)
    assert not at.exception, at.exception
    grok = [c.value for c in at.caption if "Memorised" in c.value or "never reached" in c.value]
    assert len(grok) == 1
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    names = {t.get("name") for f in figs for t in f["data"]}
    assert {"train accuracy", "test accuracy"} <= names
    assert at.slider(key="ph_grok_th").value == 0.9


def test_grokking_tab_explains_other_datasets(page, probed_template, tmp_path):
    at = page(copy_store(probed_template, tmp_path))
    assert any("The grokking view is for zoos on the `modular` dataset" in i.value for i in at.info)
