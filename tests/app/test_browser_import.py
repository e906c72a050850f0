"""Real browser: folders of checkpoints of a small built-in ResNet, trained here, imported with
``zooscope import-run`` (two runs), then the Landscape and Connectivity pages computed and drawn on them.
Screenshots go to tests/artifacts/; skipped, with a loud reason, when /usr/bin/chromium is missing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from app_conftest import ARTIFACTS, REPO_ROOT
from safetensors.torch import save_file

import store
from engine import data as zdata
from engine import nets
from engine.config import ArchSpec

pytestmark = pytest.mark.browser

RESNET = ArchSpec(name="resnet", width=8, depth=1)
VIEWPORT = {"width": 1400, "height": 1700}


def write_resnet_run(folder: Path, seed: int, steps: tuple[int, ...] = (0, 40, 80)) -> Path:
    """A small ResNet (BatchNorm on) trained on digits by SGD with momentum; its weights at ``steps`` saved as
    step_N.safetensors."""
    ds = zdata.load("digits")
    model = nets.build(RESNET, ds.input_shape, ds.n_outputs, seed=seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True)
    for step in range(max(steps) + 1):
        if step in steps:
            save_file({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()},
                      str(folder / f"step_{step}.safetensors"))
        idx = torch.randint(0, len(ds.x_train), (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(ds.x_train[idx]), ds.y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return folder


def import_run(store_path: Path, folder: Path) -> str:
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "--store", str(store_path), "import-run", str(folder),
                           "--arch", "resnet", "--width", "8", "--depth", "1", "--dataset", "digits",
                           "--zoo", "imported-resnets"],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def wait_idle(page, timeout: float = 90.0) -> None:
    page.wait_for_selector("h1", timeout=timeout * 1000)
    deadline, quiet = time.monotonic() + timeout, 0
    while quiet < 3:
        assert time.monotonic() < deadline, f"the app was still running after {timeout} s at {page.url}"
        quiet = quiet + 1 if page.locator("[data-testid=stStatusWidget]").count() == 0 else 0
        time.sleep(0.2)


def problems(page) -> list[str]:
    found = page.locator("[data-testid=stException]").all_inner_texts()
    found += page.locator("[data-testid=stAlertContainer]:has([data-testid=stAlertContentError])").all_inner_texts()
    return found


def compute_and_wait_for_chart(page, button: str, timeout: float = 300.0) -> None:
    """Click the page's compute button, then wait until the result's chart is drawn (the job ran in a worker)."""
    page.get_by_role("button", name=button).click()
    chart = page.locator("[data-testid=stTabPanel]:visible [data-testid=stPlotlyChart]")
    deadline = time.monotonic() + timeout
    while chart.count() == 0:
        assert not problems(page), problems(page)
        assert time.monotonic() < deadline, f"no chart after {timeout} s; page text:\n{page.inner_text('body')[:3000]}"
        time.sleep(1.0)
    chart.first.wait_for(state="visible")
    page.locator(".js-plotly-plot .main-svg").first.wait_for(state="visible")
    wait_idle(page)


def test_imported_resnet_runs_on_the_landscape_and_connectivity_pages(tmp_path, serve, browser):
    s = tmp_path / "store"
    for seed in (1, 2):
        out = import_run(s, write_resnet_run(tmp_path / f"resnet-seed{seed}", seed))
        assert "imported 3 checkpoints (steps 0..80)" in out
    with store.open_store(s, owner=False) as st:
        zoo_id = st.get_zoo("imported-resnets")["zoo_id"]
        runs = st.list_runs(zoo_id)
        table = st.runs_table(zoo_id)
    assert len(runs) == 2 and (runs["origin"] == "imported").all()
    assert (table["final_test_acc"] > 0.5).all()  # trained: well above chance (0.1) on the imported weights
    a, b = runs["run_id"].tolist()

    server = serve(s)
    page = browser.new_page(viewport=VIEWPORT)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        page.goto(f"{server.url}/landscape?zoo={zoo_id}&ls_res=11")
        wait_idle(page)
        assert page.locator("h1").first.inner_text().strip() == "Loss landscape"
        compute_and_wait_for_chart(page, "Compute the 11×11 surface")
        assert re.search(r"Centre loss [\d.]+, accuracy [\d.]+", page.inner_text("body"))
        assert not problems(page), problems(page)
        page.screenshot(path=str(ARTIFACTS / "20-imported-resnet-landscape.png"))

        page.goto(f"{server.url}/connectivity?zoo={zoo_id}&runs={a},{b}")
        wait_idle(page)
        assert page.locator("h1").first.inner_text().strip() == "Mode connectivity"
        compute_and_wait_for_chart(page, "Align and interpolate")
        assert "Function-preservation self-check passed" in page.inner_text("body")
        assert not problems(page), problems(page)
        page.screenshot(path=str(ARTIFACTS / "21-imported-resnet-connectivity.png"))
        assert errors == []
    finally:
        page.close()
