"""Server CPU per page run, for every page, cold and cached: target <= 0.05 CPU-s for a cached view.

One process, no browser: ``AppTest`` runs app.py on each page against a store that holds the
tiny zoo (configs/tiny.toml, trained by the CLI) and every probe the pages' default views show
(their "Compute" buttons clicked once, the queued probes computed in this process as a worker
would, and their jobs marked done). The CPU time counted is the script thread's own
(``time.thread_time`` around Streamlit's ``ScriptRunner._run_script``): what the server spends
on one page run, without AppTest's bookkeeping on the test side and without the dispatcher's
background ticks (stopped while measuring, so nothing changes the catalog under the runs).

- cold: every page cache cleared before the run (``st.cache_data`` and the probe caches of
  :mod:`engine.jobs.probe_job` and :mod:`store.artifacts`), as right after a server start;
- cached: the same view run again in the same session (a rerun: a widget moved, a fragment ticked).

    .venv/bin/python bench/page_cpu.py [--repeats 5] [--profile PAGE ...] [--store DIR]

``--profile representations phases`` prints the cProfile of one cached run of those pages (top 40
by cumulative time). ``--store DIR`` reuses (or builds once) a prepared store in DIR.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "app")]
RESULTS = REPO / "bench" / "results" / "page_cpu.txt"
PAGES = ["zoo", "landscape", "connectivity", "representations", "phases", "rashomon", "reports"]
BUDGET_CACHED = 0.05


class ScriptClock:
    """CPU seconds of each script run, measured in the script thread itself."""

    def __init__(self):
        from streamlit.runtime.scriptrunner import script_runner

        self.runs: list[float] = []
        self.profile: cProfile.Profile | None = None
        original = script_runner.ScriptRunner._run_script
        clock = self

        def timed(runner, rerun_data):
            t0 = time.thread_time()
            profile = clock.profile
            if profile is not None:
                profile.enable()
            try:
                return original(runner, rerun_data)
            finally:
                if profile is not None:
                    profile.disable()
                clock.runs.append(time.thread_time() - t0)

        script_runner.ScriptRunner._run_script = timed

    def last(self) -> float:
        return self.runs[-1]


def _page_path(page: str) -> str:
    return f"pages/{page}.py"


def clear_page_caches() -> None:
    """Everything a cold run must not find: Streamlit's data cache and the in-process probe caches."""
    import streamlit as st

    st.cache_data.clear()
    for clear in _process_cache_clearers():
        clear()


def _process_cache_clearers():
    """The ``clear_caches`` functions of modules that keep per-process caches (absent before they existed)."""
    import importlib

    for name in ("engine.jobs.probe_job", "store.artifacts", "pages.ui.view_cache"):
        clear = getattr(importlib.import_module(name), "clear_caches", None)
        if clear is not None:
            yield clear


def _compute_queued_probes(svc) -> int:
    """Run every queued probe job in this process (as a worker would) and mark it done; returns how many."""
    from engine.jobs.context import JobContext
    from engine.jobs.probe_job import run_probe

    jobs = svc.store.list_jobs(status="queued", kind="probe").to_dict("records")
    for job in jobs:
        spec = json.loads(job["spec_json"])
        run_probe(spec, JobContext(svc.store.path, job["job_id"], owner=job["owner"] or "local"))
        svc.store.ingest_bundles()
        svc.store.update_job(job["job_id"], status="done", progress=1.0, message="computed by bench/page_cpu.py")
        svc.dispatcher.generation += 1
    return len(jobs)


def _click_compute_buttons(at) -> int:
    clicked = 0
    for button in at.button:
        if button.key and button.key.endswith("_go"):
            button.click()
            at.run()
            clicked += 1
    return clicked


def prepare(store_path: Path) -> None:
    """Train the tiny zoo and compute every probe the pages' default views ask for."""
    from conftest import release_services, train_with_cli
    from streamlit.testing.v1 import AppTest

    from pages.ui.services import get_services

    t0 = time.perf_counter()
    train_with_cli(store_path)
    print(f"trained the tiny zoo in {time.perf_counter() - t0:.0f} s", flush=True)
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.run()
    for round_ in range(4):
        computed = 0
        for page in PAGES:
            at.switch_page(_page_path(page)).run()
            _click_compute_buttons(at)
            t0 = time.perf_counter()
            n = _compute_queued_probes(_services(get_services))
            computed += n
            if n:
                print(f"  round {round_}: {page}: computed {n} probes in {time.perf_counter() - t0:.0f} s", flush=True)
        if not computed:
            break
    release_services()


def _services(get_services):
    """The app's owner services, outside a script run (the cached resource is shared by the process)."""
    return get_services()


def measure(store_path: Path, repeats: int, profile_pages: list[str]) -> list[tuple[str, float, float]]:
    import streamlit as st  # noqa: F401
    from conftest import release_services
    from streamlit.testing.v1 import AppTest

    from pages.ui.services import get_services

    clock = ScriptClock()
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=300)
    at.run()
    get_services().dispatcher.stop()  # no background ticks: nothing changes the catalog while measuring
    rows = []
    try:
        for page in PAGES:
            cold, cached = [], []
            for _ in range(repeats):
                clear_page_caches()
                at.switch_page(_page_path(page)).run()
                _check(at, page)
                cold.append(clock.last())
                at.run()
                _check(at, page)
                cached.append(clock.last())
            rows.append((page, statistics.median(cold), statistics.median(cached)))
            print(f"  {page:<16} cold {rows[-1][1]:.3f}  cached {rows[-1][2]:.3f} CPU-s", flush=True)
        for page in profile_pages:
            at.switch_page(_page_path(page)).run()
            clock.profile = cProfile.Profile()
            at.run()
            profile, clock.profile = clock.profile, None
            out = io.StringIO()
            pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(40)
            print(f"-- cProfile of one cached run of {page}\n{out.getvalue()}")
    finally:
        release_services()
    return rows


def _check(at, page: str) -> None:
    if at.exception:
        raise RuntimeError(f"the {page} page raised: {at.exception[0].value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--profile", choices=PAGES, nargs="*", default=[],
                        help="print the cProfile of one cached run of these pages")
    parser.add_argument("--store", type=Path, default=None, help="a folder to keep the prepared store in")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    import store

    os.environ["ZOOSCOPE_WORKERS"] = "0"  # probes are computed here, never by a worker
    os.environ.setdefault("ZOOSCOPE_AUTH", "off")
    tmp = tempfile.TemporaryDirectory(prefix="zooscope-page-cpu-")
    template = args.store or Path(tmp.name) / "template"
    if not (template / "store.duckdb").is_file():
        os.environ[store.STORE_ENV_VAR] = str(template)
        prepare(template)
    work = Path(tmp.name) / "store"
    shutil.copytree(template, work, ignore=shutil.ignore_patterns("owner.json"))
    os.environ[store.STORE_ENV_VAR] = str(work)
    with store.open_store(work, owner=False) as st_:
        counts = st_.table_counts()
    rows = measure(work, args.repeats, args.profile)
    tmp.cleanup()
    lines = [f"Server CPU per page run (script thread, AppTest), tiny zoo with every default probe computed "
             f"({counts['probe']} probes, {counts['job']} jobs); medians of {args.repeats}; "
             f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}",
             f"{'page':<16} {'cold CPU-s':>10} {'cached CPU-s':>13}"]
    lines += [f"{page:<16} {cold:10.3f} {cached:13.3f}" for page, cold, cached in rows]
    worst = max(cached for _, _, cached in rows)
    lines.append(f"mean over pages: cold {statistics.mean(r[1] for r in rows):.3f}, cached "
                 f"{statistics.mean(r[2] for r in rows):.3f}; every cached view within "
                 f"{BUDGET_CACHED} CPU-s: {'yes' if worst <= BUDGET_CACHED else 'NO'} (worst {worst:.3f})")
    text = "\n".join(lines)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")


if __name__ == "__main__":
    threading.current_thread().name = "bench"
    main()
