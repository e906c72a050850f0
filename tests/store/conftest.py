"""Fixtures for the store tests: a fresh owned store per test, and a helper
that runs a Python snippet holding a store in another process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import store

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def st(tmp_path):
    with store.open_store(tmp_path / "zoo-store") as opened:
        yield opened


@pytest.fixture
def holder():
    """Start a process that runs ``code`` (with ``path`` bound), wait for it to print 'ready'."""
    started: list[subprocess.Popen] = []

    def start(path: Path, code: str) -> subprocess.Popen:
        script = "import sys, time, store\npath = sys.argv[1]\n" + textwrap.dedent(code) + \
            "\nprint('ready', flush=True)\ntime.sleep(120)\n"
        proc = subprocess.Popen([sys.executable, "-c", script, str(path)], cwd=REPO_ROOT,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        started.append(proc)
        line = proc.stdout.readline()
        if line.strip() != "ready":
            proc.kill()
            raise AssertionError(f"holder process failed to start: {line!r} {proc.stderr.read()}")
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
