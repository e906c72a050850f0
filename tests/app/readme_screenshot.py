"""Make assets/screenshot-zoo.png, the README's picture of the Zoo page (not a test; run by hand).

Trains a small real zoo (2-D moons, MLPs: 2 widths x 3 learning rates x 3 seeds) in a temporary
store with the CLI, starts the dashboard on it, and photographs the Zoo page in Debian's
Chromium with the curves grouped by learning rate; the phase-diagram tab goes to
tests/artifacts/readme-phase-diagram.png.

    .venv/bin/python tests/app/readme_screenshot.py
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import ARTIFACTS, CHROMIUM, REPO_ROOT, Server, train_with_cli  # noqa: E402

SWEEP = """
name = "moons-mlp"
[base]
batch_size = 64
steps = 400
checkpoints = "log:8"
[base.dataset]
name = "moons"
[base.arch]
name = "mlp"
depth = 2
[base.optim]
name = "momentum"
[grid]
width = [8, 32]
lr = [0.01, 0.05, 0.2]
seed = [0, 1, 2]
"""
OUT = REPO_ROOT / "assets" / "screenshot-zoo.png"


def main() -> None:
    from playwright.sync_api import sync_playwright
    from test_browser import wait_idle

    with tempfile.TemporaryDirectory(prefix="zooscope-shot-") as tmp:
        store_path, config = Path(tmp) / "store", Path(tmp) / "moons.toml"
        config.write_text(SWEEP)
        train_with_cli(store_path, config)
        server = Server(store_path, Path(tmp) / "server.log")
        try:
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                                                   "--disable-component-update", "--disable-sync"])
                page = browser.new_page(viewport={"width": 1440, "height": 1240}, device_scale_factor=1)
                page.goto(f"{server.url}/?curve_group=hp_lr&curve_metric=acc")
                wait_idle(page)
                time.sleep(2)  # let the charts finish their transitions
                OUT.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(OUT))
                page.get_by_role("tab", name="Phase diagram").click()
                time.sleep(3)
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "readme-phase-diagram.png"))
                browser.close()
        finally:
            server.stop()
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
