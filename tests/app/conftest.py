"""Fixtures for the dashboard tests: stores to open, the app under AppTest, and a real server.

Stores are built once per session (a tiny trained zoo, a 200-run synthetic zoo) and copied
for each test, because the dashboard takes the store's single-owner lock: every test gets
its own folder, and the cached owner services are released between tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

import store

REPO_ROOT = Path(__file__).resolve().parents[2]
APP = REPO_ROOT / "app.py"
TINY_CONFIG = REPO_ROOT / "configs" / "tiny.toml"
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
PAGES = ["pages/zoo.py", "pages/landscape.py", "pages/connectivity.py", "pages/representations.py",
         "pages/phases.py", "pages/rashomon.py", "pages/reports.py", "pages/zoo_map.py"]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_zoo import seed_fake_zoo  # noqa: E402


def train_with_cli(
    store_path: Path, config: Path = TINY_CONFIG, env: dict | None = None
) -> subprocess.CompletedProcess:
    """``zooscope --store DIR train CONFIG`` in a subprocess; raises with its output if it fails."""
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "--store", str(store_path), "train", str(config)],
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "ZOOSCOPE_WORKERS": "1", **(env or {})})
    if proc.returncode != 0:
        raise AssertionError(f"zooscope train failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def zoo_counts(path: Path, zoo_name: str) -> dict[str, int]:
    """Rows of one zoo per table (runs, checkpoints, metrics), read without owning the store."""
    with store.open_store(path, owner=False) as st_:
        zoo_id = st_.get_zoo(zoo_name)["zoo_id"]
        return {"run": len(st_.list_runs(zoo_id)), "checkpoint": len(st_.list_checkpoints(zoo_id=zoo_id)),
                "metric": len(st_.metrics(zoo_id=zoo_id)),
                "run_done": len(st_.list_runs(zoo_id, status="done"))}


# -- stores ------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def trained_template(tmp_path_factory) -> Path:
    """A closed store holding the tiny zoo (configs/tiny.toml), trained once per session by the CLI."""
    path = tmp_path_factory.mktemp("trained") / "store"
    train_with_cli(path)
    return path


@pytest.fixture(scope="session")
def fake200_template(tmp_path_factory) -> Path:
    """A closed store holding a synthetic 200-run zoo (see fake_zoo.py; not a result)."""
    path = tmp_path_factory.mktemp("fake200") / "store"
    with store.open_store(path) as st_:
        seed_fake_zoo(st_)
    return path


def _copy(template: Path, tmp_path: Path) -> Path:
    dest = tmp_path / "store"
    shutil.copytree(template, dest, ignore=shutil.ignore_patterns("owner.json"))
    return dest


@pytest.fixture
def empty_store(tmp_path) -> Path:
    return tmp_path / "store"


@pytest.fixture
def trained_store(trained_template, tmp_path) -> Path:
    return _copy(trained_template, tmp_path)


@pytest.fixture
def fake200_store(fake200_template, tmp_path) -> Path:
    return _copy(fake200_template, tmp_path)


# -- AppTest -----------------------------------------------------------------------------------------

def release_services() -> None:
    """Close the owner services the app holds in this process (stops the dispatcher, frees the lock).

    They live for the process, outside Streamlit's caches (``engine.jobs.resident``), so clearing the
    caches leaves them open; closing them is what a server does when it stops."""
    from pages.ui.services import close_services

    close_services()
    st.cache_resource.clear()
    st.cache_data.clear()  # views keyed by the catalog generation are per process, not per store


@pytest.fixture
def app(monkeypatch):
    """``app(store_path, page=None, **query)``: a fresh AppTest of app.py on ``store_path``, already run.

    Jobs stay queued (no worker slots), so a test never trains by accident; the services the
    app opened are released after the test.
    """
    monkeypatch.setenv("ZOOSCOPE_WORKERS", "0")
    release_services()

    def make(store_path: Path, page: str | None = None, **query: str) -> AppTest:
        monkeypatch.setenv(store.STORE_ENV_VAR, str(store_path))
        at = AppTest.from_file(str(APP), default_timeout=60)
        for key, value in query.items():
            at.query_params[key] = value
        at.run()
        if page is not None:
            at.switch_page(page).run()
        return at

    yield make
    release_services()


def shown(markdown: str) -> str:
    """What a reader sees of an element's Markdown source (``at.error[0].value`` and the like): the
    text of its CommonMark rendering. Pages escape user text (pages.ui.text.literal), so the
    source of an error about ``'fast'`` is ``\\'fast\\'``; the reader sees ``'fast'``."""
    import html
    import re

    from markdown_it import MarkdownIt

    rendered = MarkdownIt("commonmark").render(markdown)
    return html.unescape(re.sub(r"<[^>]+>", "", rendered)).strip()


def current_services():
    """The owner services the app opened in this process (the instance it holds)."""
    from pages.ui.services import get_services

    return get_services()


# -- a real server -----------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """``python -m engine.serve`` on a free port with its own store; ``url`` is its address.

    ``launcher`` replaces ``[python, -m, engine.serve]`` (bench/load_test.py --profile: a measuring launcher).
    """

    def __init__(self, store_path: Path, log_path: Path, env: dict | None = None, launcher: list[str] | None = None):
        self.store_path = store_path
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [*(launcher or [sys.executable, "-m", "engine.serve"]), "--server.port", str(self.port),
             "--server.headless", "true", "--server.address", "127.0.0.1", "--server.fileWatcherType", "none"],
            cwd=REPO_ROOT, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**os.environ, store.STORE_ENV_VAR: str(store_path), **(env or {})})
        self._wait_healthy()

    def _wait_healthy(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.3)
        raise AssertionError(f"server did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]

    def stop(self) -> None:
        """Stop the server, then the job workers it left running (they live in sessions of their own)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        _stop_workers(self.store_path)


def _stop_workers(store_path: Path) -> None:
    try:
        with store.open_store(store_path, owner=False) as st_:
            pids = st_.list_jobs(status="running")["pid"].dropna().astype(int).tolist()
    except store.StoreError:
        return
    for pid in pids:
        try:
            if b"engine.jobs.worker" in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGKILL)
        except (FileNotFoundError, ProcessLookupError):
            pass


@pytest.fixture
def serve(tmp_path):
    """``serve(store_path, **env) -> Server``; every server started is stopped after the test."""
    started: list[Server] = []

    def start(store_path: Path, **env: str) -> Server:
        server = Server(store_path, tmp_path / f"server-{len(started)}.log", env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright; skipped loudly when it is not installed."""
    if not CHROMIUM.is_file():
        pytest.skip(f"REAL-BROWSER TESTS SKIPPED: no Chromium at {CHROMIUM}. Install Debian's package "
                    "(`make browser-deps`, i.e. apt-get install chromium); Zooscope never downloads a browser.")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError as exc:
        pytest.skip(f"REAL-BROWSER TESTS SKIPPED: Playwright is not installed ({exc}); pip install -e '.[test]'.")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        chromium = pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--disable-dev-shm-usage"])
        yield chromium
        chromium.close()


# Test modules import the helpers above as ``from app_conftest import ...``: every test folder has a
# ``conftest`` module, and when pytest loads several folders' conftests up front (``pytest tests/app
# tests/phases``) the name ``conftest`` means whichever came last.
sys.modules["app_conftest"] = sys.modules[__name__]
