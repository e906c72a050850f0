"""engine.serve: the server's own per-run costs (no full GC after every run, a frozen warm heap)."""

from __future__ import annotations

import json
import subprocess
import sys

from app_conftest import REPO_ROOT

from engine import serve


def test_the_server_turns_off_the_full_collection_after_every_run_unless_told_otherwise(monkeypatch):
    from streamlit.web import cli as streamlit_cli

    from engine.jobs import resident

    seen = []
    monkeypatch.setattr(serve, "warm_process", lambda: seen.append("warm"))
    monkeypatch.setattr(streamlit_cli, "main", lambda prog_name: seen.append(list(sys.argv)))
    monkeypatch.setattr(resident, "close_all", lambda: None)
    monkeypatch.setattr(sys, "argv", list(sys.argv))
    serve.main(["--server.port", "9"])
    serve.main(["--runner.postScriptGC", "true"])
    assert seen[0] == "warm"  # warmed before Streamlit starts serving
    first, second = seen[1], seen[3]
    assert first[:3] == ["streamlit", "run", str(serve.APP)] and first[-2:] == ["--server.port", "9"]
    gc_at = first.index("--runner.postScriptGC")
    assert first[gc_at + 1] == "false"
    # the user's own option comes after the default, and Streamlit's CLI keeps the last one
    assert second[-2:] == ["--runner.postScriptGC", "true"] and second.index("--runner.postScriptGC") < len(second) - 2


def test_warm_process_imports_the_pages_modules_and_freezes_what_is_alive():
    code = ("import gc, json, sys\nfrom engine.serve import WARM_MODULES, warm_process\n"
            "n = warm_process()\n"
            "print(json.dumps({'frozen': n, 'count': gc.get_freeze_count(), "
            "'missing': [m for m in WARM_MODULES if m not in sys.modules]}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
                         check=True)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got["missing"] == [] and "engine.jobs.builtin_probes" in serve.WARM_MODULES
    assert got["frozen"] == got["count"] > 100_000  # torch, plotly, pandas: the heap a full collection walked
