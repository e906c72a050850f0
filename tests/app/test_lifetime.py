"""The owner services live for the server process: an anonymous clear-cache message stops no job and
releases no store; and every HTTP response forbids framing the dashboard.

Against a real server (``python -m engine.serve``) with a real websocket client (ws_session.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from app_conftest import TINY_CONFIG, train_with_cli, zoo_counts
from ws_session import Session

import store

DEADLINE_S = 240.0


def _running_job(store_path: Path) -> Path | None:
    """The folder of a job whose worker has started and reported progress but not finished, if any."""
    for d in sorted((store_path / "inbox").glob("*")):
        if (d / "spec.json").is_file() and (d / "worker.json").is_file() and (d / "progress.json").is_file() \
                and not (d / "result.json").exists() and not (d / "error.json").exists():
            return d
    return None


def _wait_for(what: str, probe, timeout: float = DEADLINE_S):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout} s")


async def _scenario(server_url: str, store_path: Path, config: Path) -> dict:
    async with Session(server_url) as first:  # the first session opens the store as its owner
        opened = await first.run()
    assert not opened.problems, opened.problems
    owner = store_path / "owner.json"
    owner_before = (owner.stat().st_ino, json.loads(owner.read_text()))
    out = (await asyncio.to_thread(train_with_cli, store_path, config)).stdout
    assert "handed to that process" in out, out
    job = await asyncio.to_thread(_wait_for, "a training job's worker reporting progress",
                                  lambda: _running_job(store_path))
    # The worker (leader of its own process group) is paused while the message is handled, so the job
    # cannot end before it on a fast machine; a worker stopped by the message dies (SIGKILL at once, SIGTERM
    # once continued), which the job's final status shows.
    worker = json.loads((job / "worker.json").read_text())["pid"]
    os.killpg(worker, signal.SIGSTOP)
    try:
        assert not (job / "result.json").exists() and not (job / "error.json").exists(), "the job ended too early"
        async with Session(server_url) as anonymous:  # no sign-in needed to send it
            await anonymous.clear_cache()
            after = await anonymous.run()  # handled after the clear-cache message, in order
    finally:
        os.killpg(worker, signal.SIGCONT)
    assert not after.problems, after.problems
    assert owner.is_file() and (owner.stat().st_ino, json.loads(owner.read_text())) == owner_before
    deadline = time.monotonic() + DEADLINE_S
    while True:  # the dashboard still serves, and shows the job's runs done (a failed job shows in the sidebar)
        async with Session(server_url) as later:
            run = await later.run()
        assert not run.problems, run.problems
        finished = sum(text.endswith(" train done") for text in run.texts)  # the sidebar's recent jobs
        if "Zoo · lifetime" in run.text and "4 of 4 runs shown (4 done)" in run.text and finished == 2:
            break  # the tiny zoo's job (from the template store) and this one
        assert time.monotonic() < deadline, f"the job's runs were not shown done within {DEADLINE_S} s:\n{run.text}"
        await asyncio.sleep(1.0)
    assert owner.is_file() and owner.stat().st_ino == owner_before[0]
    return json.loads((job / "result.json").read_text())


def test_an_anonymous_clear_cache_stops_no_job_and_keeps_the_store(serve, trained_store, tmp_path):
    server = serve(trained_store)
    config = tmp_path / "lifetime.toml"  # the tiny sweep, trained longer: the message lands while it runs
    config.write_text(TINY_CONFIG.read_text().replace('name = "tiny"', 'name = "lifetime"')
                      .replace("steps = 60", "steps = 3000"))

    with ThreadPoolExecutor(1) as pool:  # a thread of its own: Playwright may hold an event loop in this one
        outcome = pool.submit(asyncio.run, _scenario(server.url, trained_store, config)).result()

    assert outcome.get("status") == "done", outcome
    server.stop()
    assert "Traceback" not in server.log(), server.log()
    assert zoo_counts(trained_store, "lifetime")["run_done"] == 4
    with store.open_store(trained_store, owner=False) as st_:
        train = st_.list_jobs(kind="train")
        assert set(train["status"]) == {"done"}, train[["status", "error"]]


def test_every_http_response_forbids_framing(serve, empty_store):
    server = serve(empty_store)
    for path in ("/", "/_stcore/health", "/landscape?zoo=x", "/no/such/file.js"):
        try:
            with urllib.request.urlopen(server.url + path, timeout=30) as resp:
                headers = resp.headers
        except urllib.error.HTTPError as err:  # a 404 must say it too
            headers = err.headers
        assert headers["X-Frame-Options"] == "DENY", (path, dict(headers))
        assert headers["Content-Security-Policy"] == "frame-ancestors 'none'", (path, dict(headers))
        assert len(headers.get_all("X-Frame-Options")) == 1
