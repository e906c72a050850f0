"""Real browser: the Landscape page's issue-17 views on the tiny trained zoo, computed the way a reader does
(a click, a job in a background worker, the chart drawn when it is stored): a PCA surface with its distance off
the plane and its topology, a wider random-direction surface with several basins, then the curvature per layer.
Screenshots go to tests/artifacts/ (30-36 landscape-*.png: the page and each chart). Skipped, with a loud reason,
without Chromium."""

from __future__ import annotations

import re
import shutil
import time

import pytest
from app_conftest import ARTIFACTS, Server
from test_browser import VIEWPORT, problems, shot, title, wait_idle

import store

pytestmark = pytest.mark.browser

CHART = "[data-testid=stTabPanel]:visible [data-testid=stPlotlyChart]"


@pytest.fixture(scope="module")
def landscape_server(trained_template, tmp_path_factory, browser):
    """A server on a copy of the tiny zoo (4 MLPs, checkpoints at 4 steps); one worker computes the probes."""
    path = tmp_path_factory.mktemp("browser-landscape") / "store"
    shutil.copytree(trained_template, path, ignore=shutil.ignore_patterns("owner.json"))
    with store.open_store(path, owner=False) as st_:
        zoo_id = st_.get_zoo("tiny")["zoo_id"]
        run_id = st_.runs_table(zoo_id)["run_id"].iloc[0]
    server = Server(path, path.parent / "server.log", env={"ZOOSCOPE_WORKERS": "1"})
    yield server, zoo_id, run_id
    server.stop()


def chart(page, title_start: str):
    """The visible Plotly chart whose title starts with ``title_start``."""
    return page.locator(CHART).filter(has=page.locator(".gtitle", has_text=re.compile("^" + re.escape(title_start))))


def compute(page, button: str, title_start: str, timeout: float = 300.0):
    """Click a compute button, then wait until the chart titled ``title_start`` is drawn (the job ran in a worker)."""
    go = page.get_by_role("button", name=button)
    go.click()
    go.wait_for(state="detached", timeout=60_000)  # the page ran again: a chart found now is the new one
    found = chart(page, title_start)
    deadline = time.monotonic() + timeout
    while found.count() == 0:
        assert not problems(page), problems(page)
        assert time.monotonic() < deadline, (f"no chart {title_start!r} after {timeout} s; page text:\n"
                                             f"{page.inner_text('body')[:3000]}")
        time.sleep(0.5)
    found.first.locator(".main-svg").first.wait_for(state="visible")
    wait_idle(page)
    return found.first


def texts(fig, selector: str) -> list[str]:
    """The drawn text of a chart's SVG elements (axis titles ``.g-xtitle``, legend ``.legendtext``, …)."""
    found = fig.locator(selector).evaluate_all("els => els.map(e => e.textContent)")  # SVG has no innerText
    return [t.strip() for t in found if t and t.strip()]


def choose(page, label: str, option: str, query: str) -> None:
    """Pick ``option`` in the selectbox labelled ``label``, as a reader does, and wait until the page has run
    with it: its URL holds ``query`` (the selectbox's parameter, written by that run)."""
    box = page.locator(f'input[aria-label="{label}"]')
    box.scroll_into_view_if_needed()  # scrolling closes an open menu: scroll first, then open it
    time.sleep(0.3)
    box.click()
    options = page.locator("[role=option]")
    options.first.wait_for(state="visible")
    options.filter(has_text=re.compile(f"^{re.escape(option)}$")).click()
    page.wait_for_url(re.compile(re.escape(query)), timeout=60_000)
    wait_idle(page)


def look(fig, name: str) -> None:
    fig.scroll_into_view_if_needed()
    fig.screenshot(path=str(ARTIFACTS / f"{name}.png"))


def test_plane_distance_topology_and_curvature_per_layer_are_drawn(landscape_server, browser):
    from playwright.sync_api import expect  # here: without Playwright, the browser fixture skips the test

    server, zoo_id, run_id = landscape_server
    page = browser.new_page(viewport=VIEWPORT)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{server.url}/landscape?zoo={zoo_id}&run={run_id}&ls_dir=pca&ls_res=11")
        wait_idle(page)
        assert title(page) == "Loss landscape"

        # the surface in PCA directions: the contours, the trajectory off the plane, the topology
        compute(page, "Compute the 11×11 surface", "loss surface")
        plane = chart(page, "Trajectory vs the plane").first
        plane.locator(".main-svg").first.wait_for(state="visible")
        assert re.match(r"Trajectory vs the plane: the plane explains [\d.]+% of its variance",
                        texts(plane, ".gtitle")[0])
        assert texts(plane, ".g-xtitle, .g-x2title") == ["step"]  # one step axis, under both panels
        assert texts(plane, ".g-ytitle") == ["distance (parameter units)"]
        assert texts(plane, ".g-y2title") == ["off-plane share"]
        assert {"off the plane", "in the plane (‖(a, b)‖)", "share off the plane"} <= set(texts(plane, ".legendtext"))
        assert plane.locator(".scatterlayer .trace").count() == 3

        topology = chart(page, "Topology of the surface").first
        assert re.match(r"Topology of the surface: \d+ basins? deeper than", texts(topology, ".gtitle")[0])
        assert {"basins on the contours", "persistence diagram", "merge tree"} <= set(
            texts(topology, ".annotation-text"))
        assert {"birth (loss at the minimum)", "minima"} <= set(texts(topology, ".g-x2title, .g-x3title"))
        assert {"death (loss at the merge saddle)", "loss"} <= set(texts(topology, ".g-y2title, .g-y3title"))
        assert "global minimum (∞)" in texts(topology, ".legendtext")
        assert re.search(r"Sublevel-set persistence of the loss grid \(4-connected\): \d+ local minima",
                         page.inner_text("body"))
        assert not problems(page), problems(page)
        shot(page, "30-landscape-pca-surface")
        look(plane, "31-landscape-plane-distance")
        look(topology, "32-landscape-topology")

        # a random-direction surface twice as wide has several minima: basins kept and merged, saddles marked
        choose(page, "Directions", "random, filter-normalized", "ls_dir=filter")
        choose(page, "Span ±", "2.0", "ls_span=2.0")
        expect(chart(page, "Topology of the surface")).to_have_count(0)  # not computed yet: a button, no chart
        topology = compute(page, "Compute the 11×11 surface", "Topology of the surface")
        assert chart(page, "Trajectory vs the plane").count() == 0  # no plane without PCA directions
        heading = re.match(r"Topology of the surface: (\d+) basins? deeper than [\d.e-]+ in loss \((\d+) minim",
                           texts(topology, ".gtitle")[0])
        kept, minima = int(heading[1]), int(heading[2])
        assert minima >= 2 and 1 <= kept <= minima, heading[0]
        legend = texts(topology, ".legendtext")
        assert ("merged (shallow)" in legend) == (minima > kept), legend
        assert ("kept basin" in legend) == ("merge saddle" in legend) == (kept >= 2), legend
        assert not problems(page), problems(page)
        look(topology, "36-landscape-topology-several-basins")

        # curvature per layer: queued over every checkpoint of the run, drawn at the picked one and through training
        page.get_by_role("tab", name="Curvature per layer").click()
        button = page.get_by_role("button", name=re.compile(r"Compute the curvature per layer at all \d+ checkpoints"))
        button.wait_for(state="visible")
        bars = compute(page, button.inner_text().strip(), "Curvature per layer at step")
        assert {"top eigenvalue of the block", "trace of the block"} <= set(texts(bars, ".annotation-text"))
        assert texts(bars, ".g-ytitle") == ["eigenvalue"] and texts(bars, ".g-y2title") == ["trace"]
        assert bars.locator(".xtick").count() >= 2  # a bar per layer, each named under it
        assert any(t.startswith("2/η = ") for t in texts(bars, ".annotation-text"))
        # the bars fill their axis, whether or not 2/η (here 40, ~50x the blocks' λ_max) is drawn on it
        axis = bars.locator(".draglayer .xy .nsewdrag").bounding_box()["height"]
        tallest = max(b["height"] for b in (p.bounding_box() for p in bars.locator(".barlayer .trace").first
                                            .locator(".point path").all()))
        assert tallest > 0.5 * axis, (tallest, axis)
        lines = chart(page, "Top eigenvalue per layer over training").first
        lines.locator(".main-svg").first.wait_for(state="visible")
        assert texts(lines, ".g-xtitle") == ["step"]
        assert "2 / η (edge of stability)" in texts(lines, ".legendtext")
        assert len(texts(lines, ".legendtext")) >= 3  # two or more layers and the 2/η line
        assert "Hutchinson" in page.inner_text("body")
        assert not problems(page), problems(page)
        shot(page, "33-landscape-curvature-per-layer")
        look(bars, "34-landscape-per-layer-bars")
        look(lines, "35-landscape-per-layer-lines")
        assert errors == []
    finally:
        page.close()
