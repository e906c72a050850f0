"""The Reports page: a draft's items shown, reordered, edited, removed and saved; stored reports listed
with author and date; the "Add to report" button; the whole flow in a real browser, ending with the
downloaded HTML opened offline; and a report with every kind of figure opened in headless Chromium
with all network requests refused (here, not in tests/report, so one Playwright serves the session)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest
from app_conftest import ARTIFACTS, REPO_ROOT, current_services, release_services
from streamlit.testing.v1 import AppTest

import store
from engine.report import DraftBook, build_report, figure_item, list_stored_reports, table_item, write_html

sys.path.insert(0, str(REPO_ROOT / "tests" / "report"))
from report_helpers import XSS, seed_small_zoo, zoo_figures  # noqa: E402

PAGE = "pages/reports.py"
USER = "tester"


@pytest.fixture(scope="module")
def drafted_template(tmp_path_factory) -> Path:
    """A closed store: the small zoo and the draft 'tester' holding its curves and phase diagram."""
    path = tmp_path_factory.mktemp("drafted") / "store"
    with store.open_store(path) as st_:
        ids = seed_small_zoo(st_)
        curves, phase, _ = zoo_figures(st_, ids["zoo_id"])
        book = DraftBook(st_)
        book.pin(USER, figure_item(curves, title=f"curves {XSS}", params={"metric": "loss"},
                                   run_ids=ids["run_ids"]), author=USER)
        draft, _ = book.pin(USER, figure_item(phase, title="phase", params={"x": "lr"},
                                              checkpoint_ids=ids["checkpoint_ids"][:2]), author=USER)
        book.save(draft.model_copy(update={"notes": f"Notes with {XSS}"}), author=USER)
    return path


@pytest.fixture
def drafted_store(drafted_template, tmp_path) -> Path:
    import shutil

    shutil.copytree(drafted_template, tmp_path / "store", ignore=shutil.ignore_patterns("owner.json"))
    return tmp_path / "store"


@pytest.fixture
def reports_app(app, monkeypatch):
    monkeypatch.setenv("USER", USER)
    return lambda path: app(path, page=PAGE)


def _draft():
    return DraftBook(current_services().store).load(USER)


def _titles(at) -> list[str]:
    return [t.value for t in at.text_input if t.key.startswith("ri_title_")]


def test_an_empty_store_explains_how_to_pin(reports_app, empty_store):
    at = reports_app(empty_store)
    assert not at.exception, at.exception
    assert at.title[0].value == "Reports"
    assert any("Nothing pinned" in i.value for i in at.info)
    assert any("No stored reports yet" in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_draft_items_are_reordered_edited_removed_and_kept_in_the_store(reports_app, drafted_store):
    at = reports_app(drafted_store)
    assert not at.exception, at.exception
    assert len(at.get("plotly_chart")) == 2
    assert _titles(at) == [f"curves {XSS}", "phase"]
    assert at.text_area(key="report_notes").value == f"Notes with {XSS}"
    previews = [e.proto.body for e in at.get("html")]  # the export's renderer: raw HTML shown as text
    escaped = XSS.replace("<", "&lt;").replace(">", "&gt;")
    assert [p.strip() for p in previews] == [f"<p>Notes with {escaped}</p>"], previews
    first, second = (i.item_id for i in _draft().items)

    at.button(key=f"ri_down_{first}").click().run()
    assert _titles(at) == ["phase", f"curves {XSS}"]
    assert [i.item_id for i in _draft().items] == [second, first]

    at.text_input(key=f"ri_title_{second}").input("Phase diagram of the test loss").run()
    at.text_area(key=f"ri_note_{second}").input("*Seeds* average out.").run()
    at.text_input(key="report_title").input(f"Weekly {XSS}").run()
    stored = _draft()
    assert (stored.title, stored.items[0].title, stored.items[0].note) == (
        f"Weekly {XSS}", "Phase diagram of the test loss", "*Seeds* average out.")

    at.button(key=f"ri_del_{first}").click().run()
    assert not at.exception, at.exception
    assert [i.item_id for i in _draft().items] == [second] and len(at.get("plotly_chart")) == 1


def test_saving_lists_the_report_with_author_and_date(reports_app, drafted_store):
    at = reports_app(drafted_store)
    at.text_input(key="report_author").input(XSS).run()
    at.button(key="report_save").click().run()
    assert not at.exception, at.exception
    assert "Saved the report 'Untitled report'" in at.success[0].value
    reports = list_stored_reports(current_services().store)
    assert reports["author"].tolist() == [XSS]
    table = next(d.value for d in at.dataframe if "Title" in d.value.columns)
    assert table[["Title", "Author"]].values.tolist() == [["Untitled report", XSS]]
    assert table["Saved (UTC)"].notna().all()
    assert at.get("download_button")  # saved report's HTML, and the stored report's


def test_add_to_report_pins_the_figure_once(app, monkeypatch, drafted_store):
    monkeypatch.setenv("USER", "pinner")
    monkeypatch.setenv(store.STORE_ENV_VAR, str(drafted_store))

    def script(repo: str) -> None:
        import sys

        sys.path.insert(0, repo)
        import pandas as pd
        import plotly.graph_objects as go

        from pages.ui.report_draft import pin_figure, pin_table

        fig = go.Figure(go.Scatter(x=[1, 2, 3], y=[3, 1, 2], name="<script>alert(1)</script>"))
        pin_figure(fig, title="A pinned figure", params={"k": 1}, checkpoint_ids=["c1"], key="demo", source="test")
        pin_table(pd.DataFrame({"run": ["a", "b"], "acc": [0.5, 0.75]}), title="A table", params={}, key="tab")

    at = AppTest.from_function(script, args=(str(REPO_ROOT),), default_timeout=60)
    at.run()
    assert not at.exception, at.exception
    assert at.button(key="pin_demo").label == "Add to report"
    at.button(key="pin_demo").click().run()
    at.button(key="pin_demo").click().run()  # the same figure again: not added twice
    at.button(key="pin_tab").click().run()
    assert not at.exception, at.exception
    draft = DraftBook(current_services().store).load("pinner")
    assert [(i.title, i.params, i.checkpoint_ids, i.source, i.pinned_by) for i in draft.items] == [
        ("A pinned figure", {"k": 1}, ["c1"], "test", "pinner"),
        ("A table", {}, [], "zoo", "pinner"),  # the root URL is the Zoo page
    ]
    assert draft.items[0].figure["data"][0]["name"] == XSS
    assert draft.items[1].table == {"columns": ["run", "acc"], "rows": [["a", 0.5], ["b", 0.75]]}
    release_services()


# -- the real browser ------------------------------------------------------------------------------------

DRAWN = """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
                   .filter(el => el.querySelector('svg.main-svg') && el._fullLayout).length"""


def _wait_idle(page, timeout: float = 90.0) -> None:
    page.wait_for_selector("h1", timeout=timeout * 1000)
    deadline, quiet = time.monotonic() + timeout, 0
    while quiet < 3:
        assert time.monotonic() < deadline, f"the app was still running after {timeout} s"
        quiet = quiet + 1 if page.locator("[data-testid=stStatusWidget]").count() == 0 else 0
        time.sleep(0.2)


@pytest.mark.browser
def test_reports_flow_in_a_browser_ends_with_an_offline_html_file(serve, drafted_store, browser, tmp_path):
    server = serve(drafted_store, USER=USER)
    page = browser.new_page(viewport={"width": 1400, "height": 1700}, accept_downloads=True)
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.goto(f"{server.url}/reports")
    _wait_idle(page)
    page.wait_for_function(f"({DRAWN})() >= 2", timeout=60_000)
    assert page.locator("[data-testid=stException]").count() == 0
    assert page.locator("p", has_text=f"Notes with {XSS}").is_visible()  # the notes preview, as text
    assert page.locator("input[aria-label='Item 1']").input_value() == f"curves {XSS}"
    assert page.locator(".legendtext", has_text=XSS).first.is_visible()  # the run's name in the legend
    page.screenshot(path=str(ARTIFACTS / "reports-page-top.png"))
    page.get_by_role("button", name="Save report").click()
    page.get_by_text("Saved the report").wait_for(timeout=30_000)
    _wait_idle(page)
    page.screenshot(path=str(ARTIFACTS / "reports-page-saved.png"))
    with page.expect_download(timeout=60_000) as download:
        page.get_by_role("button", name="Download HTML").first.click()
    report = tmp_path / "downloaded.html"
    download.value.save_as(report)
    assert dialogs == []
    page.close()

    offline = browser.new_page(viewport={"width": 1200, "height": 1400})
    url = report.resolve().as_uri()
    refused = []
    offline.route("**/*", lambda r: r.continue_() if r.request.url == url else (refused.append(r.request.url),
                                                                                 r.abort()))
    offline.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    offline.goto(url)
    offline.wait_for_function(f"({DRAWN})() === 2", timeout=60_000)
    assert refused == [] and dialogs == []
    assert offline.locator("h2", has_text=f"curves {XSS}").is_visible()
    offline.screenshot(path=str(ARTIFACTS / "reports-page-download.png"))
    offline.close()

def open_offline(browser, path, viewport=None):
    """Open ``path`` with every request but the file itself aborted; returns (page, refused urls, dialogs, errors)."""
    page = browser.new_page(viewport=viewport or {"width": 1200, "height": 1400})
    url = path.resolve().as_uri()
    refused, dialogs, errors = [], [], []
    page.route("**/*", lambda route: route.continue_() if route.request.url == url
               else (refused.append(route.request.url), route.abort()))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    return page, refused, dialogs, errors




@pytest.mark.browser
def test_report_renders_every_figure_offline_and_shows_user_text_as_text(browser, small_store, tmp_path):
    st, ids = small_store
    book = DraftBook(st)
    figs = zoo_figures(st, ids["zoo_id"])  # SVG curves, a heatmap, a WebGL surface
    for k, fig in enumerate(figs):
        book.pin("d", figure_item(fig, title=f"{XSS} figure {k}", params={"run": XSS}, note=f"**bold** {XSS}",
                                  checkpoint_ids=ids["checkpoint_ids"][k:k + 1], run_ids=ids["run_ids"][:1]))
    draft = book.load("d")
    draft.title, draft.notes = f"Offline {XSS}", f"## Notes\n\nA run named `{XSS}` and {XSS}."
    draft.items.append(table_item(st.runs_table(ids["zoo_id"])[["name", "hp_lr", "final_test_loss"]], title="runs"))
    path = write_html(build_report(st, draft, author=XSS), tmp_path / "report.html")

    page, refused, dialogs, errors = open_offline(browser, path)
    page.wait_for_function(f"({DRAWN})() === {len(figs)}", timeout=60_000)
    time.sleep(0.5)
    assert page.evaluate(DRAWN) == len(figs) == page.locator(".zs-figure").count()
    assert page.locator(".zs-error").count() == 0
    assert refused == [] and dialogs == [], (refused, dialogs)
    assert not [e for e in errors if "Content Security Policy" in e or "Uncaught" in e], errors
    assert page.title() == f"Offline {XSS}"
    assert page.locator("h1").inner_text() == f"Offline {XSS}"
    assert page.get_by_text(f"{XSS} figure 0", exact=True).first.is_visible()
    assert page.locator(".zs-notes code").inner_text() == XSS
    assert page.locator("table").filter(has_text=XSS).count() >= 2  # the runs table and the provenance
    # interactive: hovering a cell of the phase diagram shows its numbers
    drag = page.locator("#fig-2 .nsewdrag").first
    drag.scroll_into_view_if_needed()
    box = drag.bounding_box()
    page.mouse.move(box["x"] + box["width"] * 0.25, box["y"] + box["height"] * 0.25)
    page.wait_for_selector("#fig-2 .hoverlayer .hovertext", timeout=5_000)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(ARTIFACTS / "report-offline.png"), full_page=True)
    page.close()
