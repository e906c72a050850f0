"""Real-browser tests: the dashboard server (``python -m engine.serve``) on a free port with a
temporary store, driven by Playwright in Debian's headless Chromium. Screenshots go to
tests/artifacts/. Skipped, with a loud reason, when /usr/bin/chromium is missing."""

from __future__ import annotations

import importlib.util
import re
import shutil
import sys
import threading
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest
from app_conftest import ARTIFACTS, PAGES, Server, zoo_counts

import store
from pages.ui.text import WORD_JOINER

pytestmark = pytest.mark.browser

NAV = dict(zip(["Zoo", "Landscape", "Connectivity", "Representations", "Phases", "Rashomon", "Reports"], PAGES))
XSS = "<script>alert(1)</script>"
VIEWPORT = {"width": 1400, "height": 1700}


# -- helpers ----------------------------------------------------------------------------------------------

def wait_idle(page, timeout: float = 90.0) -> None:
    """Wait until the app has finished running: a title is drawn and no "Running…" status shows for 0.6 s."""
    page.wait_for_selector("h1", timeout=timeout * 1000)
    deadline, quiet = time.monotonic() + timeout, 0
    while quiet < 3:
        if time.monotonic() > deadline:
            raise AssertionError(f"the app was still running after {timeout} s at {page.url}")
        quiet = quiet + 1 if page.locator("[data-testid=stStatusWidget]").count() == 0 else 0
        time.sleep(0.2)


def problems(page) -> list[str]:
    """Exceptions and error alerts on the page (a healthy page has none)."""
    found = page.locator("[data-testid=stException]").all_inner_texts()
    found += page.locator("[data-testid=stAlertContainer]:has([data-testid=stAlertContentError])").all_inner_texts()
    return found


def shot(page, name: str) -> Path:
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path))
    return path


def visible_text(locator) -> str:
    """A locator's text as a reader sees it: without the invisible word joiners that keep user text's
    URLs from becoming links (pages.ui.text.literal)."""
    return locator.inner_text().replace(WORD_JOINER, "")


def title(page) -> str:
    return visible_text(page.locator("h1").first).strip()


def wait_for_text(page, pattern: str, timeout: float, what: str) -> str:
    """Poll the page's text until ``pattern`` (a regex) appears; returns the match."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, visible_text(page.locator("body")))
        if match:
            return match.group(0)
        assert not problems(page), problems(page)
        time.sleep(0.5)
    raise AssertionError(f"{what}: {pattern!r} did not appear within {timeout} s; page text:\n"
                         f"{page.locator('body').inner_text()[:3000]}")


@pytest.fixture
def new_page(browser):
    pages = []

    def make():
        page = browser.new_page(viewport=VIEWPORT)
        page.dialogs = []
        page.on("dialog", lambda d: (page.dialogs.append(d.message), d.dismiss()))
        pages.append(page)
        return page

    yield make
    for page in pages:
        page.close()


def pick(page, box, option: str) -> None:
    """Pick ``option`` in the selectbox ``box`` as a reader does: scrolled into view first (scrolling
    closes an open menu, and the options of a menu still scrolling are never stable for a click: three
    slow full runs timed out on them), opened, filtered by typing, clicked; again if the menu closed
    before the click landed."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    for _ in range(3):
        box.scroll_into_view_if_needed()
        time.sleep(0.3)
        box.click()
        box.fill(option)
        try:
            page.locator("[role=option]", has_text=re.compile(f"^{re.escape(option)}$")).click(timeout=10_000)
        except PlaywrightTimeout:
            continue
        if box.input_value() == option:
            return
    raise AssertionError(f"{option!r} could not be picked; the box shows {box.input_value()!r}")


# -- the first-run flow -------------------------------------------------------------------------------------

def test_first_run_pages_and_training_a_zoo(serve, empty_store, new_page):
    """Empty store → first-run panel; every page via the sidebar; a zoo queued in the form trains to completion."""
    server = serve(empty_store)
    page = new_page()
    page.goto(server.url)
    wait_idle(page)
    assert title(page) == "Welcome to Zooscope"
    assert page.get_by_role("button", name="Train the demo zoo").is_visible()
    shot(page, "01-first-run")

    for i, label in enumerate(NAV):
        page.locator("[data-testid=stSidebarNav]").get_by_role("link", name=label, exact=True).click()
        page.wait_for_url(re.compile(rf"/{label.lower()}" if label != "Zoo" else r"/(\?.*)?$"))
        wait_idle(page)
        assert not problems(page), (label, problems(page))
        if label == "Zoo":
            assert title(page) == "Welcome to Zooscope"
        shot(page, f"02-page-{i}-{label.lower()}")
    page.locator("[data-testid=stSidebarNav]").get_by_role("link", name="Zoo", exact=True).click()
    wait_idle(page)

    # a tiny zoo through the form (the 18-run demo takes minutes on two cores)
    page.get_by_text("Create a zoo").click()
    form = page.locator("[data-testid=stForm]")
    field = lambda label: form.locator(f'input[aria-label="{label}"]')  # noqa: E731
    field("Zoo name").fill("browser-zoo")
    pick(page, field("Dataset"), "moons")
    for label, value in {"Steps": "60", "Batch size": "32", "Checkpoints": "linear:3", "width": "8",
                         "lr": "0.05, 0.2", "seed": "0, 1"}.items():
        field(label).fill(value)
    form.get_by_role("button", name="Preview").click()
    wait_for_text(page, r"4 runs · [\d,]+ sample-steps", 30, "the preview")
    shot(page, "03-form-preview")
    page.locator("[data-testid=stForm]").get_by_role("button", name="Queue training").click()
    wait_for_text(page, r"Zoo · browser-zoo", 30, "the new zoo's page")

    progress = wait_for_text(page, r"train job (queued|running)[^\n]*", 60, "live progress")
    shot(page, "04-training-progress")
    wait_for_text(page, r"4 of 4 runs shown \(4 done\)", 240, f"training to completion (last seen: {progress})")
    wait_idle(page)
    assert not problems(page), problems(page)
    assert page.locator("[data-testid=stPlotlyChart]").count() >= 1  # the training curves
    shot(page, "05-trained-zoo")
    page.get_by_role("tab", name="Phase diagram").click()
    page.locator("[data-testid=stTabPanel]:visible [data-testid=stPlotlyChart]").first.wait_for(state="visible")
    shot(page, "06-phase-diagram")
    server.stop()
    counts = zoo_counts(empty_store, "browser-zoo")
    assert counts["run"] == counts["run_done"] == 4 and counts["checkpoint"] == 16


# -- a trained store --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_server(trained_template, tmp_path_factory, browser):
    """One server for the read-only checks below: the tiny zoo plus a zoo and run named like markup."""
    path = tmp_path_factory.mktemp("browser-trained") / "store"
    shutil.copytree(trained_template, path)
    with store.open_store(path) as st_:
        zoos = {"tiny": st_.get_zoo("tiny")["zoo_id"], "xss": st_.create_zoo(XSS, {}, owner=XSS)}
        st_.add_runs([{"zoo_id": zoos["xss"], "name": f"{XSS} & co", "status": "done", "hparams": {"seed": 0},
                       "owner": XSS}])
    server = Server(path, path.parent / "server.log")
    yield server, zoos
    server.stop()


def test_user_text_is_shown_as_text_not_run_as_markup(trained_server, new_page):
    server, zoos = trained_server
    page = new_page()
    page.goto(f"{server.url}/?zoo={zoos['xss']}")
    wait_idle(page)
    assert title(page) == f"Zoo · {XSS}"
    assert page.locator("[data-testid=stSidebar] input[aria-label=Zoo]").input_value() == f"{XSS} (1 run)"
    scripts = page.eval_on_selector_all("script", "els => els.map(e => e.textContent)")
    assert not [s for s in scripts if "alert(1)" in s]
    time.sleep(1)
    assert page.dialogs == []
    assert not problems(page), problems(page)
    shot(page, "07-escaped-user-text")


def test_a_shared_link_opens_the_same_view(trained_server, new_page):
    """``/landscape?zoo=<id>`` on a fresh session opens that page with that zoo, and the zoo stays on the Zoo page."""
    server, zoos = trained_server
    page = new_page()
    page.goto(f"{server.url}/landscape?zoo={zoos['tiny']}")
    wait_idle(page)
    assert title(page) == "Loss landscape"
    assert page.locator("[data-testid=stSidebar] input[aria-label=Zoo]").input_value() == "tiny (4 runs)"
    page.locator("[data-testid=stSidebarNav]").get_by_role("link", name="Zoo", exact=True).click()
    wait_idle(page)
    assert title(page) == "Zoo · tiny"
    assert f"zoo={zoos['tiny']}" in page.url
    assert not problems(page), problems(page)


# -- a probed zoo: the Phases page ------------------------------------------------------------------------

def _phases_helpers():
    """tests/phases/conftest.py as a module (it trains and probes the tiny phase zoo), loaded by path
    when pytest has not loaded it already (e.g. ``pytest tests/app``)."""
    if "phases_conftest" not in sys.modules:
        source = Path(__file__).parents[1] / "phases" / "conftest.py"
        spec = importlib.util.spec_from_file_location("phases_conftest", source)
        module = importlib.util.module_from_spec(spec)
        sys.modules["phases_conftest"] = module
        spec.loader.exec_module(module)
    return sys.modules["phases_conftest"]


@pytest.fixture(scope="module")
def phases_server(tmp_path_factory, browser):
    helpers = _phases_helpers()
    path = helpers._train(tmp_path_factory.mktemp("browser-phases") / "store", helpers.TINY, probe=True)
    server = Server(path, path.parent / "server.log")
    yield server
    server.stop()


def test_phase_diagram_and_a_cell_opened_on_another_page(phases_server, new_page):
    """A probed zoo: heatmaps and the phase map drawn; a cell's link opens Connectivity with its two seeds."""
    page = new_page()
    page.goto(f"{phases_server.url}/phases?cell=1")
    wait_idle(page, timeout=120)
    assert title(page).startswith("Phase diagrams")
    charts = page.locator("[data-testid=stTabPanel]:visible [data-testid=stPlotlyChart]")
    charts.first.wait_for(state="visible")
    deadline = time.monotonic() + 60  # the charts appear one by one: the first visible is not the last drawn
    while charts.count() < 8 and time.monotonic() < deadline:
        page.wait_for_timeout(250)
    assert charts.count() >= 8  # a heatmap per metric and the phase map
    assert not problems(page), problems(page)
    assert page.dialogs == []  # the zoo's name holds a <script> tag; it is shown, never run
    shot(page, "09-phases")
    with page.context.expect_page() as opened:  # a cell's links open in a new tab: the diagram stays
        page.get_by_role("link", name="Connectivity of two seeds").click()
    cell = opened.value
    cell.set_viewport_size(VIEWPORT)
    wait_idle(cell)
    url = urlparse(cell.url)
    assert url.path == "/connectivity" and len(parse_qs(url.query)["runs"][0].split(",")) == 2, cell.url
    assert title(cell) == "Mode connectivity"
    tags = cell.locator("[data-testid=stMultiSelect]").first.locator("[data-tag]")
    tags.nth(1).wait_for(state="visible", timeout=30000)  # the run picker fills in from the URL
    chosen = [t.get_attribute("aria-label") for t in tags.all()]
    assert len(chosen) == 2 and all(t.startswith("lr=0.2 seed=") for t in chosen), chosen  # cell 1: lr 0.2, both seeds
    assert not problems(cell), problems(cell)
    shot(cell, "10-phases-cell-on-connectivity")
    cell.close()


# -- user text that looks like Markdown fetches nothing --------------------------------------------------

class _Listener:
    """A tiny HTTP server on 127.0.0.1 standing for an attacker's host: it records every request."""

    def __init__(self):
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.requests: list[str] = []
        seen = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                seen.append(self.path)
                self.send_response(404)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener():
    found = _Listener()
    yield found
    found.close()


def test_names_written_as_markdown_images_fetch_nothing(trained_template, tmp_path, serve, new_page, listener):
    """A zoo, runs, a job's owner and error, and report notes carry ``![…](http://127.0.0.1:PORT/…)``
    (and the notes a raw ``<img>``): the Zoo page, the Instability tab and the Reports page show the
    names as typed, and the listener at that address receives nothing."""
    from engine.report import DraftBook

    host = listener.url
    zoo_name = f"![t]({host}/zoo.png)"
    path = tmp_path / "store"
    shutil.copytree(trained_template, path)
    with store.open_store(path) as st_:
        tiny = st_.get_zoo("tiny")["zoo_id"]
        for i, run_id in enumerate(st_.list_runs(tiny)["run_id"]):
            st_.update_run(run_id, name=f"![r{i}]({host}/run{i}.png) $x$")
        named = st_.create_zoo(zoo_name, {}, owner=f"![o]({host}/owner.png)")
        st_.add_runs([{"zoo_id": named, "name": f"![n]({host}/run.png)", "status": "done",
                       "hparams": {"opt": f"<img src={host}/hp.png>", "seed": 0}, "owner": "x"}])
        job = st_.submit_job("train", {}, owner=f"![o]({host}/owner.png)", zoo_id=named)
        st_.update_job(job, status="failed", error=f"sweep ![e]({host}/error.png) failed")
        book = DraftBook(st_)
        book.save(book.load("lit").model_copy(update={
            "title": f"![t]({host}/title.png)",
            "notes": f"Notes **kept** ![n]({host}/notes.png)\n\n<img src={host}/raw.png>"}), author="lit")
    server = serve(path)
    page = new_page()

    page.goto(f"{server.url}/?zoo={named}")
    wait_idle(page)
    assert title(page) == f"Zoo · {zoo_name}"  # shown as typed, readable
    wait_for_text(page, re.escape(f"sweep ![e]({host}/error.png) failed"), 30, "the failed job in the sidebar")
    page.locator("[data-testid=stSidebar] input[aria-label=Zoo]").click()  # the zoo list, opened
    page.locator("[role=option]").first.wait_for(state="visible")
    assert page.locator(f"a[href^='{host}']").count() == 0  # no URL in a name became a link
    shot(page, "11-markdown-names-zoo")
    page.keyboard.press("Escape")

    page.goto(f"{server.url}/connectivity?zoo={tiny}")
    wait_idle(page)
    page.get_by_role("tab", name="Instability").click()
    forks = wait_for_text(page, r"Forks run !\[r\d\]\(http://127\.0\.0\.1:\d+/run\d\.png\) \$x\$ at steps", 30,
                          "the Instability tab naming run A")
    assert host in forks
    assert page.locator(f"a[href^='{host}']").count() == 0  # no URL in a name became a link
    shot(page, "12-markdown-names-instability")

    page.goto(f"{server.url}/reports?draft=lit")
    wait_idle(page)
    notes = page.locator(".st-key-report_notes_preview")
    notes.wait_for(state="visible")
    assert notes.locator("strong", has_text="kept").count() == 1  # notes are still Markdown
    assert notes.locator("img").count() == 0
    assert f"<img src={host}/raw.png>" in notes.inner_text()  # raw HTML shown as text
    assert page.locator(f"a[href^='{host}']").count() == 1  # only the notes' own link
    assert notes.locator(f"a[href='{host}/notes.png']").count() == 1  # (as in the export: "!" and a link)
    shot(page, "13-markdown-names-reports")

    time.sleep(2)  # anything the pages asked for has arrived by now
    assert listener.requests == [], listener.requests
