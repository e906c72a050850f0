"""Real-browser flow of the Zoo map: open the map of the demo zoo (its sweep, shortened to 50 steps), compute its
pairs in a background worker, select a cluster, and open a pair of its runs on Connectivity.
Screenshots go to tests/artifacts/ (11-zoo-map.png, 12-zoo-map-pair-on-connectivity.png)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlparse

import pytest
from app_conftest import REPO_ROOT, Server, train_with_cli
from test_browser import VIEWPORT, problems, shot, title, wait_for_text, wait_idle

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory, browser):
    """The demo zoo's sweep (18 MLPs on MNIST-1D, 3 widths x 2 learning rates x 3 seeds) at 50 steps."""
    folder = tmp_path_factory.mktemp("browser-zoo-map")
    config = folder / "demo-short.toml"
    config.write_text((REPO_ROOT / "configs" / "demo.toml").read_text().replace("steps = 1500", "steps = 50"))
    path = folder / "store"
    train_with_cli(path, config, env={"ZOOSCOPE_WORKERS": "2"})
    server = Server(path, folder / "server.log")
    yield server
    server.stop()


@pytest.fixture
def map_page(browser):
    page = browser.new_page(viewport=VIEWPORT)
    yield page
    page.close()


def test_zoo_map_select_a_cluster_and_open_a_pair_on_connectivity(demo_server, map_page):
    page = map_page
    page.goto(f"{demo_server.url}/zoo_map?zm_metric=cka")
    wait_idle(page, timeout=120)
    assert title(page) == "Zoo map"
    page.get_by_role("button", name="missing distances").click()  # every pair, every distance: one job
    wait_for_text(page, r"clusters at", timeout=400, what="the map after its pairs are computed")
    wait_idle(page, timeout=60)
    charts = page.locator("[data-testid=stTabPanel]:visible [data-testid=stPlotlyChart]")
    charts.first.wait_for(state="visible")
    assert charts.count() >= 2  # the map and the merge tree
    assert not problems(page), problems(page)
    page.get_by_role("button", name="Select its runs").click()
    wait_idle(page)
    text = wait_for_text(page, r"Selected \d+ runs", timeout=30, what="the cluster's runs selected")
    n = int(text.split()[1])
    runs = parse_qs(urlparse(page.url).query).get("runs", [""])[0].split(",")
    assert len(runs) == n >= 1, (page.url, text)
    shot(page, "11-zoo-map")
    if n < 2:  # a cluster of one: select every model with a box instead (the map's own selection)
        pytest.fail(f"the first cluster has {n} run; the demo zoo's CKA map should group its seeds")
    with page.context.expect_page() as opened:
        page.get_by_role("link", name="on Connectivity").click()
    pair = opened.value
    pair.set_viewport_size(VIEWPORT)
    wait_idle(pair)
    url = urlparse(pair.url)
    chosen = parse_qs(url.query)["runs"][0].split(",")
    assert url.path == "/connectivity" and chosen == runs[:2], pair.url
    assert title(pair) == "Mode connectivity"
    tags = pair.locator("[data-testid=stMultiSelect]").first.locator("[data-tag]")
    tags.nth(1).wait_for(state="visible", timeout=30000)  # the run picker fills in from the URL
    assert not problems(pair), problems(pair)
    shot(pair, "12-zoo-map-pair-on-connectivity")
    pair.close()
