"""AppTest tests of every page: smoke runs, the first-run panel, the create-zoo form, the runs
table, placeholders, escaping of user text, and selections carried by the URL."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import streamlit as st
from app_conftest import PAGES, TINY_CONFIG, current_services, release_services, shown
from streamlit.testing.v1.element_tree import Block, Element

import store
from pages.ui.text import literal

sys.path.insert(0, str(Path(__file__).parents[1] / "nets"))
import plugin_fixtures  # noqa: E402

clean_plugins = plugin_fixtures.clean_plugins  # a fixture of this module too
XSS = "<script>alert(1)</script>"


def _walk(node):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from _walk(child)


def _markdown_like(at):
    """Every element whose text Streamlit renders as markdown (titles, captions, alerts, ...)."""
    for root in (at.main, at.sidebar):
        for node in _walk(root):
            if isinstance(node, Element) and hasattr(node.proto, "body"):
                yield node


def _block_holding(at, key: str) -> Block:
    """The innermost block (column, form, ...) whose direct children include the widget ``key``."""
    for node in _walk(at.main):
        if isinstance(node, Block) and any(getattr(c, "key", None) == key for c in node.children.values()):
            return node
    raise AssertionError(f"no widget with key {key!r} on the page")


def _errors_under(at, key: str) -> list[str]:
    """Error messages in the same block as widget ``key`` and after it: what a reader sees next to it."""
    children = list(_block_holding(at, key).children.values())
    index = [getattr(c, "key", None) for c in children].index(key)
    return [shown(c.value) for c in children[index + 1:] if getattr(c, "type", None) == "error"]


# -- every page ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("store_kind", ["empty_store", "trained_store"])
def test_every_page_runs(app, request, store_kind):
    at = app(request.getfixturevalue(store_kind))
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (page, at.exception)
        assert at.title, f"{page} shows no title"
        if store_kind == "trained_store":  # the shared sidebar is drawn on every page
            assert at.sidebar.selectbox(key="zoo").value is not None, page


# -- empty store: first-run panel and the create-zoo form -----------------------------------------------

def test_empty_store_shows_first_run_panel(app, empty_store):
    at = app(empty_store)
    assert at.title[0].value == "Welcome to Zooscope"
    assert at.button(key="train_demo").label == "Train the demo zoo"
    assert at.expander[0].label == "Create a zoo"


def test_train_demo_button_queues_the_demo_zoo(app, empty_store):
    at = app(empty_store)
    at.button(key="train_demo").click().run()
    assert not at.exception, at.exception
    svc = current_services()
    jobs = svc.store.list_jobs()
    assert list(jobs["kind"]) == ["train"] and list(jobs["status"]) == ["queued"]  # no worker slots in tests
    zoo = svc.store.get_zoo("demo")
    assert jobs["zoo_id"].iloc[0] == zoo["zoo_id"]
    runs = svc.store.list_runs(zoo["zoo_id"])
    assert len(runs) == 18 and set(runs["status"]) == {"queued"}
    assert at.title[0].value == "Zoo · demo"  # the page switched to the new zoo
    assert at.query_params["zoo"] == zoo["zoo_id"]


@pytest.mark.parametrize(("field", "value", "expected"), [
    ("f_grid_width", "0", r"width.*greater than or equal to 1.*got 0"),
    ("f_grid_lr", "0.1, fast", r"lr.*valid number.*'fast'"),
    ("f_grid_depth", "two", r"depth.*valid integer.*'two'"),
    ("f_grid_seed", "0, 0", r"sweep axis 'seed' repeats a value"),
    ("f_ckpt", "bogus:3", r"checkpoint schedule must be .*'bogus:3'"),
    ("f_name", "", r"zoo name must not be blank"),
])
def test_form_shows_validation_error_next_to_its_field_and_queues_nothing(app, empty_store, field, value,
                                                                          expected):
    at = app(empty_store)
    at.text_input(key=field).input(value)
    at.button(key="FormSubmitter:create_zoo-Queue training").click().run()
    assert not at.exception, at.exception
    errors = _errors_under(at, field)
    assert len(errors) == 1, f"errors next to {field}: {errors}; all errors: {[e.value for e in at.error]}"
    assert re.search(expected, errors[0]), errors[0]
    assert len(at.error) == 1, [e.value for e in at.error]
    assert current_services().store.table_counts()["job"] == 0
    assert current_services().store.list_zoos().empty


def test_form_number_field_error_sits_under_that_field(app, empty_store):
    at = app(empty_store)
    at.number_input(key="f_steps").set_value(0)
    at.button(key="FormSubmitter:create_zoo-Preview").click().run()
    assert _errors_under(at, "f_steps") == ["Input should be greater than or equal to 1 (got 0)"]


def test_form_preview_counts_runs_and_queue_submits_them(app, empty_store):
    at = app(empty_store)
    at.text_input(key="f_name").input("small")
    at.text_input(key="f_grid_width").input("8, 16")
    at.text_input(key="f_grid_lr").input("0.1")
    at.text_input(key="f_grid_seed").input("0, 1, 2")
    at.button(key="FormSubmitter:create_zoo-Preview").click().run()
    assert any("6 runs" in info.value for info in at.info)
    assert current_services().store.list_zoos().empty  # a preview queues nothing
    at.button(key="FormSubmitter:create_zoo-Queue training").click().run()
    assert not at.exception, at.exception
    zoo = current_services().store.get_zoo("small")
    assert len(current_services().store.list_runs(zoo["zoo_id"])) == 6
    assert at.title[0].value == "Zoo · small"


def _upload_sweep(at, name: str, text: str):
    at.file_uploader(key="f_upload").upload(name, text.encode(), "application/toml")
    at.button(key="FormSubmitter:create_zoo-Queue training").click().run()
    return at


def test_uploaded_sweep_file_is_queued(app, empty_store):
    at = _upload_sweep(app(empty_store), "tiny.toml", TINY_CONFIG.read_text())
    assert not at.exception, at.exception
    zoo = current_services().store.get_zoo("tiny")
    assert len(current_services().store.list_runs(zoo["zoo_id"])) == 4
    assert at.title[0].value == "Zoo · tiny"


def test_a_sweep_file_with_a_factory_is_checked_once_per_submit(app, tmp_path, clean_plugins):
    """The form validates the sweep and submit_sweep checks it again before queueing: one child process."""
    path = tmp_path / "store"
    plugin_fixtures.write_plugins(path / "models")
    (path / "zooscope.toml").write_text('[plugins]\npaths = ["models/"]\n')
    sweep = ('name = "mine"\n[base]\nsteps = 4\nbatch_size = 8\n[base.dataset]\nname = "moons"\n'
             '[base.arch]\nfactory = "my_models:WideNet"\nkwargs = {in_features = 2, width = 4, n_classes = 2}\n'
             '[grid]\nseed = [0, 1]\n')
    at = app(path)
    started = plugin_fixtures.count_factory_checks(clean_plugins)
    at = _upload_sweep(at, "mine.toml", sweep)
    assert not at.exception and not at.error, (at.exception, [e.value for e in at.error])
    assert len(current_services().store.list_runs(current_services().store.get_zoo("mine")["zoo_id"])) == 2
    assert len(started) == 1


def test_bad_sweep_file_is_explained_by_its_name_and_queues_nothing(app, empty_store):
    at = _upload_sweep(app(empty_store), "mine.toml", 'name = "x"\n[base]\nstepz = 10\n')
    assert [shown(e.value) for e in at.error] == ["mine.toml: base.stepz: Extra inputs are not permitted (got 10)"]
    assert current_services().store.table_counts()["job"] == 0


def test_sweep_file_naming_an_unknown_dataset_is_refused_before_queueing(app, empty_store):
    at = _upload_sweep(app(empty_store), "mine.toml",
                       'name = "x"\n[base.dataset]\nname = "nosuchdata"\n[grid]\nseed = [0, 1]\n')
    assert any("nosuchdata" in e.value for e in at.error)
    assert current_services().store.table_counts()["job"] == 0


def test_importing_a_bad_weights_file_says_so_and_writes_nothing(app, trained_store):
    at = app(trained_store)
    before = current_services().store.table_counts()
    at.file_uploader(key="imp_file").upload("weights.safetensors", b"not a safetensors file")
    at.button(key="FormSubmitter:import_ckpt-Import").click().run()
    assert not at.exception, at.exception
    assert any(e.value.startswith("Nothing was imported") for e in at.error), [e.value for e in at.error]
    assert current_services().store.table_counts() == before


# -- a trained store -------------------------------------------------------------------------------------

def test_runs_table_lists_the_trained_runs(app, trained_store):
    at = app(trained_store)
    assert at.title[0].value == "Zoo · tiny"
    table = at.dataframe(key="runs_table").value
    assert len(table) == 4
    assert set(table["status"]) == {"done"}
    assert {"hp_lr", "hp_seed", "final_test_acc"} <= set(table.columns)
    assert table["final_test_acc"].between(0, 1).all()
    assert any("4 of 4 runs shown (4 done)" in c.value for c in at.caption)


def test_runs_table_filter_narrows_the_rows(app, trained_store):
    at = app(trained_store)
    at.multiselect(key="filter_hp_lr").select(0.2).run()
    table = at.dataframe(key="runs_table").value
    assert len(table) == 2 and set(table["hp_lr"]) == {0.2}


def test_runs_table_with_200_runs(app, fake200_store):
    at = app(fake200_store)
    assert not at.exception, at.exception
    assert len(at.dataframe(key="runs_table").value) == 200
    assert at.sidebar.selectbox(key="zoo").format_func(at.sidebar.selectbox(key="zoo").value) == "fake-200 (200 runs)"
    # the phase diagram defaults to the first two swept axes
    assert at.query_params["phase_x"] == "hp_width" and at.query_params["phase_y"] == "hp_lr"


def test_user_text_is_escaped_not_rendered(app, trained_store):
    with store.open_store(trained_store) as st_:
        zoo_id = st_.create_zoo(XSS, {}, owner=XSS)
        st_.add_runs([{"zoo_id": zoo_id, "name": XSS, "status": "done", "hparams": {"lr": 0.1, "seed": 0},
                       "owner": XSS}])
    at = app(trained_store, zoo=zoo_id)
    assert not at.exception, at.exception
    assert at.title[0].value == f"Zoo · {literal(XSS)}"
    assert shown(at.title[0].value) == f"Zoo · {XSS}"
    assert at.dataframe(key="runs_table").value["name"].tolist() == [XSS]  # data, drawn as text by the grid
    html_on = [e.value for e in _markdown_like(at)
               if "allow_html" in e.proto.DESCRIPTOR.fields_by_name and e.proto.allow_html]
    assert not [v for v in html_on if "<script" in v], html_on
    assert not list(at.get("html"))


# -- selections in the URL -------------------------------------------------------------------------------

@pytest.fixture
def two_zoo_store(trained_store):
    with store.open_store(trained_store) as st_:
        other = st_.create_zoo("second", {}, owner="test")
        st_.add_runs([{"zoo_id": other, "name": f"run {i}", "status": "done", "hparams": {"seed": i}}
                      for i in range(3)])
        tiny = st_.get_zoo("tiny")["zoo_id"]
        runs = st_.list_runs(tiny)["run_id"].tolist()
    return trained_store, {"tiny": tiny, "second": other}, runs


def test_query_param_selects_the_zoo(app, two_zoo_store):
    path, zoos, _ = two_zoo_store
    for name, zoo_id in zoos.items():
        release_services()
        at = app(path, zoo=zoo_id)
        assert at.title[0].value == f"Zoo · {name}"
        assert at.sidebar.selectbox(key="zoo").value == zoo_id
        assert at.query_params["zoo"] == zoo_id


def test_unknown_zoo_in_the_url_falls_back_to_the_newest(app, two_zoo_store):
    path, zoos, _ = two_zoo_store
    at = app(path, zoo="no-such-zoo")
    assert not at.exception
    assert at.sidebar.selectbox(key="zoo").value == zoos["second"]
    assert at.query_params["zoo"] == zoos["second"]


def test_choosing_a_zoo_writes_it_to_the_url(app, two_zoo_store):
    path, zoos, _ = two_zoo_store
    at = app(path)
    at.sidebar.selectbox(key="zoo").set_value(zoos["tiny"]).run()
    assert at.title[0].value == "Zoo · tiny"
    assert at.query_params["zoo"] == zoos["tiny"]


def test_query_params_select_runs_and_view_settings(app, two_zoo_store):
    path, zoos, runs = two_zoo_store
    at = app(path, zoo=zoos["tiny"], runs=",".join(runs[:2]), curve_metric="acc", phase_x="hp_seed")
    assert not at.exception
    assert any("2 selected" in c.value for c in at.caption)
    assert at.selectbox(key="curve_metric").value == "acc"
    assert at.selectbox(key="phase_x").value == "hp_seed"


def test_the_zoo_is_kept_when_switching_pages(app, two_zoo_store):
    path, zoos, _ = two_zoo_store
    at = app(path, zoo=zoos["tiny"])
    for page in ["pages/landscape.py", "pages/zoo.py"]:
        at.switch_page(page).run()
        assert at.sidebar.selectbox(key="zoo").value == zoos["tiny"], page
        assert at.query_params["zoo"] == zoos["tiny"]
    assert at.title[0].value == "Zoo · tiny"


# -- the cached store ------------------------------------------------------------------------------------

def test_clearing_the_cache_leaves_the_owner_services_open(app, trained_store):
    """The app menu's "Clear cache" (which any client may send) clears page data only: the store, its
    dispatcher and workers live for the server process (tests/app/test_lifetime.py has the real server)."""
    at = app(trained_store)
    svc = current_services()
    st.cache_resource.clear()
    st.cache_data.clear()
    at.run()
    assert not at.exception, at.exception
    assert not [e.value for e in at.error], [e.value for e in at.error]
    assert at.title[0].value == "Zoo · tiny"
    assert current_services() is svc and not svc.store.closed and svc.store.is_owner
    release_services()
    assert svc.store.closed  # what a stopping server does


def test_a_store_owned_elsewhere_is_explained(app, trained_store):
    with store.open_store(trained_store):  # this test holds the owner lock, so the app cannot
        at = app(trained_store)
    assert not at.exception, at.exception
    assert "cannot open its store" in at.error[0].value
    assert any("ZOOSCOPE_STORE=" in m.value for m in at.markdown)


def test_instability_tab_queues_the_spawning_probe_for_run_a(app, trained_store):
    at = app(trained_store, page="pages/connectivity.py")
    assert not at.exception
    assert any("Forks run" in c.value for c in at.caption), "the tab says what it will do before it runs"
    at.button(key="instability_go").click().run()
    assert not at.exception
    jobs = current_services().store.list_jobs(kind="probe")
    specs = [json.loads(s) for s in jobs["spec_json"]]
    assert [s["probe"] for s in specs] == ["connectivity.instability"]
    assert len(specs[0]["checkpoints"]) == 1 and specs[0]["params"]["n_steps"] == 6


def test_singular_vectors_tab_queues_its_probe_for_a_and_b(app, trained_store):
    at = app(trained_store, page="pages/connectivity.py")
    assert not at.exception
    at.button(key="singular_go").click().run()
    assert not at.exception
    specs = [json.loads(s) for s in current_services().store.list_jobs(kind="probe")["spec_json"]]
    assert [s["probe"] for s in specs] == ["connectivity.singular"]
    assert len(specs[0]["checkpoints"]) == 2 and specs[0]["params"]["align"] == "weight"


def test_sidebar_says_when_the_store_refuses_writes(app, empty_store):
    """A catalog file vanished under the owner (Dispatcher.fault): every page says so, literally."""
    at = app(empty_store)
    assert not [e for e in at.sidebar.error]
    current_services().dispatcher.fault = "store.duckdb.wal was deleted ![x](http://127.0.0.1:9/x.png)"
    at.run()
    assert not at.exception, at.exception
    (error,) = [shown(e.value).replace("\u2060", "") for e in at.sidebar.error]  # literal() breaks bare URLs
    assert "The store refuses new work: store.duckdb.wal was deleted ![x](http://127.0.0.1:9/x.png)" in error
    assert "Restart the server" in error
