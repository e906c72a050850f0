"""Load test: 20 dashboard sessions on one server for 60 s while training jobs write to its store.

One real server (``python -m engine.serve``) owns a store. Twenty simulated users open the
dashboard's pages over the websocket protocol a browser speaks (tests/app/ws_session.py:
real server sessions, each with its own session state and script runs, without drawing
anything on this side). Each user cycles through every page, alternating a reload (a new
session) with a rerun of its kept session, and thinks ``--think`` seconds between pages.
Meanwhile a training job is always running: whenever one finishes, the next one is handed
to the server as a request (as ``zooscope train`` does while the dashboard owns the store).

Reported: script runs, errors (exceptions, error alerts, failed or timed-out runs, and
tracebacks in the server log: must be 0), page time (request sent -> script finished, as
a user waits for it) median / p95 / max, overall and per page. Then the rows: every job's
zoo must hold exactly the rows of the same sweep trained alone beforehand (runs,
checkpoints, metrics, same values, same artifact hashes; training is deterministic), and
every artifact a checkpoint points to must exist and verify.

    .venv/bin/python bench/load_test.py [--sessions 20] [--seconds 60] [--think 1.0] [--steps 1500]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests" / "app")]
RESULTS = REPO / "bench" / "results" / "load_test.txt"

import conftest  # noqa: E402  (tests/app: the server the browser tests start)

PAGES = ["", "landscape", "connectivity", "representations", "phases", "rashomon", "reports"]
TINY = REPO / "configs" / "tiny.toml"


@dataclass
class Tally:
    times: dict[str, list[float]] = field(default_factory=dict)  # page -> seconds per script run
    errors: list[str] = field(default_factory=list)
    reruns: int = 0
    server_cpu_s: float = 0.0  # CPU the server used during the window
    window_runs: int = 0  # script runs finished during the window

    def add(self, page: str, seconds: float) -> None:
        self.times.setdefault(page or "zoo", []).append(seconds)


def _sweep_file(folder: Path, name: str, steps: int) -> Path:
    text = TINY.read_text().replace('name = "tiny"', f'name = "{name}"').replace("steps = 60", f"steps = {steps}")
    path = folder / f"{name}.toml"
    path.write_text(text)
    return path


def _train_alone(store_path: Path, config: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "engine.cli", "--store", str(store_path), "train", str(config)],
                   cwd=REPO, check=True, capture_output=True, env={**os.environ, "ZOOSCOPE_WORKERS": "1"})
    return time.perf_counter() - t0


class Server(conftest.Server):
    """The tests' server (``tests/app/conftest.py``) with this benchmark's settings and its CPU clock."""

    def __init__(self, store_path: Path, log_path: Path, executor: str = "local", profile: Path | None = None,
                 cprofile: bool = False):
        launcher = None
        if profile is not None:
            launcher = [sys.executable, str(REPO / "bench" / "profiled_serve.py"), str(profile)]
        super().__init__(store_path, log_path, env={"ZOOSCOPE_WORKERS": "1", "ZOOSCOPE_AUTH": "off",
                                                    "ZOOSCOPE_EXECUTOR": executor, "RAY_USAGE_STATS_ENABLED": "0",
                                                    "ZOOSCOPE_BENCH_CPROFILE": "1" if cprofile else "0"},
                         launcher=launcher)
        self.profile = profile

    def mark(self) -> None:
        """Ask a profiled server (``--profile``) to write a CPU snapshot: one at each end of the window."""
        if self.profile is not None:
            import signal

            os.kill(self.proc.pid, signal.SIGUSR1)

    def cpu_s(self) -> float:
        """CPU seconds the server process has used (user + system; its job workers not included)."""
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _timed(session, page: str, tally: Tally) -> None:
    t0 = time.perf_counter()
    try:
        run = await session.run(page)
    except Exception as exc:  # a timeout or a dropped connection is an error too
        tally.errors.append(f"{page or 'zoo'}: {type(exc).__name__}: {exc}")
        return
    tally.add(page, time.perf_counter() - t0)
    tally.reruns += run.reruns
    tally.errors += [f"{page or 'zoo'}: {p}" for p in run.problems]
    if run.status != "FINISHED_SUCCESSFULLY":
        tally.errors.append(f"{page or 'zoo'}: script ended {run.status}")


async def _user(url: str, index: int, deadline: float, think: float, tally: Tally) -> None:
    from ws_session import Session

    await asyncio.sleep(index * think / 20)  # users arrive spread over one think time
    pages = itertools.cycle(PAGES[index % len(PAGES):] + PAGES[:index % len(PAGES)])
    async with Session(url) as kept:
        for turn in itertools.count():
            if time.monotonic() >= deadline:
                return
            page = next(pages)
            if turn % 2 == 0:
                try:
                    async with Session(url) as fresh:  # a reload: a new server session
                        await _timed(fresh, page, tally)
                except OSError as exc:  # the server refused the connection
                    tally.errors.append(f"{page or 'zoo'}: cannot connect: {exc}")
            else:
                await _timed(kept, page, tally)
            await asyncio.sleep(think)


def _job_outcomes(store_path: Path) -> dict[str, str]:
    """Sweep name -> 'done' / 'failed' / ... for train jobs whose worker has finished (from the job folders)."""
    out = {}
    for spec in (store_path / "inbox").glob("*/spec.json"):
        try:
            request = json.loads(spec.read_text())
        except (OSError, ValueError):
            continue
        if request.get("kind") != "train":
            continue
        for name in ("result.json", "error.json"):
            try:
                out[request["spec"]["sweep"]["name"]] = json.loads((spec.parent / name).read_text())["status"]
                break
            except (OSError, ValueError, KeyError):
                pass
    return out


async def _feeder(store_path: Path, folder: Path, steps: int, deadline: float, submitted: list[str]) -> None:
    """Keep one training job running until the deadline."""
    import store
    from engine.config import load_sweep

    while time.monotonic() < deadline:
        if not submitted or submitted[-1] in _job_outcomes(store_path):
            name = f"load-{len(submitted) + 1}"
            sweep = load_sweep(_sweep_file(folder, name, steps))
            store.drop_request(store_path, "train_sweep", {"sweep": sweep.model_dump(mode="json"), "owner": "local"})
            submitted.append(name)
        await asyncio.sleep(0.5)


async def _scenario(server: Server, store_path: Path, folder: Path, args, tally: Tally) -> list[str]:
    from ws_session import Session

    async with Session(server.url) as first:  # the first session makes the server the store's owner
        await _timed(first, "", tally)
    submitted: list[str] = []
    deadline = time.monotonic() + args.seconds
    server.mark()
    cpu0, runs0 = server.cpu_s(), sum(map(len, tally.times.values()))
    await asyncio.gather(_feeder(store_path, folder, args.steps, deadline, submitted),
                         *(_user(server.url, i, deadline, args.think, tally) for i in range(args.sessions)))
    tally.server_cpu_s = server.cpu_s() - cpu0
    server.mark()
    tally.window_runs = sum(map(len, tally.times.values())) - runs0
    return submitted


def _train_workers_alive(store_path: Path) -> bool:
    """True while the worker process of a train job still runs (its command line names the job)."""
    jobs = [spec.parent.name.encode() for spec in (store_path / "inbox").glob("*/spec.json")
            if '"kind": "train"' in spec.read_text()]
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            text = cmdline.read_bytes()
        except OSError:
            continue
        if b"engine.jobs.worker" in text and any(job in text for job in jobs):  # (Ray tasks: no such process)
            return True
    return False


def _wait_settled(server: Server, store_path: Path, names: list[str], timeout: float = 600.0) -> dict[str, str]:
    """Wait until every submitted job's worker has finished and exited and its bundles are ingested."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"the server exited ({server.proc.returncode}):\n{server.log()[-3000:]}")
        outcomes = _job_outcomes(store_path)
        if (all(n in outcomes for n in names) and not list((store_path / "inbox").glob("*/part-*"))
                and not _train_workers_alive(store_path)):
            time.sleep(3.0)  # the owner's next ticks record the verdicts
            return outcomes
        time.sleep(0.5)
    raise RuntimeError(f"jobs {names} did not finish within {timeout} s: {_job_outcomes(store_path)}")


def _zoo_rows(st, name: str):
    zoo_id = st.get_zoo(name)["zoo_id"]
    runs = st.list_runs(zoo_id).set_index("run_id")
    ck = st.list_checkpoints(zoo_id=zoo_id)
    ck = ck.assign(run=ck["run_id"].map(runs["name"]))[["run", "step", "artifact_sha"]]
    me = st.metrics(zoo_id=zoo_id)
    me = me.assign(run=me["run_id"].map(runs["name"]))[["run", "step", "split", "name", "value"]]
    return (sorted(runs["status"]), ck.sort_values(["run", "step"]).reset_index(drop=True),
            me.sort_values(["run", "step", "split", "name"]).reset_index(drop=True))


def check_rows(reference: Path, served: Path, names: list[str]) -> tuple[list[str], dict, tuple[int, int]]:
    """Every zoo trained under load holds exactly the reference zoo's rows; every artifact verifies."""
    import store

    problems = []
    with store.open_store(reference, owner=False) as ref:
        want = _zoo_rows(ref, "load")
    with store.open_store(served, owner=False) as st_:
        for name in names:
            got = _zoo_rows(st_, name)
            if got[0] != want[0]:
                problems.append(f"{name}: run statuses {got[0]} != {want[0]}")
            if not got[1].equals(want[1]):
                problems.append(f"{name}: checkpoints differ ({len(got[1])} rows vs {len(want[1])})")
            if not got[2].equals(want[2]):
                problems.append(f"{name}: metrics differ ({len(got[2])} rows vs {len(want[2])})")
        for sha in st_.list_checkpoints()["artifact_sha"].dropna().unique():
            try:
                st_.get_tensors(sha)
            except store.CorruptArtifactError as exc:
                problems.append(str(exc))
        jobs = st_.list_jobs(kind="train")
        if set(jobs["status"]) != {"done"}:
            problems.append(f"train jobs not all done: {jobs[['status', 'error']].to_dict('records')}")
        counts = st_.table_counts()
    return problems, counts, (len(want[1]), len(want[2]))


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def report(args, tally: Tally, names, alone_s, rows, wall_s) -> str:
    problems, counts, (n_ck, n_me) = rows
    every = [t for ts in tally.times.values() for t in ts]
    lines = [
        f"load test: {args.sessions} sessions x {args.seconds:.0f} s on one server (think {args.think} s), "
        f"training jobs running throughout ({args.executor} executor); {os.cpu_count()} CPU cores, "
        f"load average {os.getloadavg()[0]:.1f}",
        f"script runs: {len(every)} ({tally.reruns} restarted by a catalog change); "
        f"errors: {len(tally.errors)}",
        f"page time (request -> script finished): median {statistics.median(every):.2f} s, "
        f"p95 {_pct(every, 0.95):.2f} s, max {max(every):.2f} s",
        f"server process: {tally.server_cpu_s:.0f} CPU-s in the {args.seconds:.0f} s window "
        f"({tally.server_cpu_s / args.seconds:.2f} cores busy), "
        f"{tally.server_cpu_s / max(1, tally.window_runs):.2f} CPU-s per script run",
    ]
    for page, ts in sorted(tally.times.items()):
        lines.append(f"  {page:<16} n={len(ts):<4} median {statistics.median(ts):.2f} s  p95 {_pct(ts, 0.95):.2f} s")
    lines += [
        f"training jobs during the window: {len(names)} ({', '.join(names)}); one alone took {alone_s:.1f} s "
        f"({args.steps} steps, 4 runs)",
        f"rows: each job's zoo vs the same sweep trained alone: {n_ck} checkpoints, {n_me} metric rows, "
        f"same values and artifact hashes -> {'all equal' if not problems else 'DIFFERENT'}; "
        f"catalog after: {counts}",
        f"lost rows or artifacts: {len(problems)}",
        f"wall time: {wall_s:.0f} s",
    ]
    lines += [f"ERROR {e}" for e in tally.errors[:20]] + [f"ROWS {p}" for p in problems]
    return "\n".join(lines)


def cpu_breakdown(folder: Path, runs: int) -> str:
    """Where the server's CPU went in the window (bench/profiled_serve.py's two snapshots), per page run."""
    try:
        a, b = (json.loads((folder / f"cpu-{i}.json").read_text()) for i in (0, 1))
    except OSError as exc:
        return f"no CPU breakdown: {exc}"
    total = b["process_cpu_s"] - a["process_cpu_s"]
    script = b["script_threads_cpu_s"] - a["script_threads_cpu_s"]
    threads = {name: cpu - a["live_threads_cpu_s"].get(name, 0.0) for name, cpu in b["live_threads_cpu_s"].items()}
    loop = threads.get("MainThread", 0.0)
    dispatcher = threads.get("zooscope-dispatcher", 0.0)
    n = max(1, runs)
    lines = [f"server CPU in the window: {total:.1f} CPU-s = {total / n:.3f} per page run ({runs} runs; "
             f"{b['script_threads'] - a['script_threads']} script threads)",
             f"  script threads   {script:6.1f} CPU-s  {script / n:.3f} per run",
             f"  event loop       {loop:6.1f} CPU-s  {loop / n:.3f} per run",
             f"  dispatcher       {dispatcher:6.1f} CPU-s",
             f"  other            {total - script - loop - dispatcher:6.1f} CPU-s"]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--think", type=float, default=1.0, help="seconds a user waits between pages")
    parser.add_argument("--steps", type=int, default=1500, help="training steps of each job's 4 runs")
    parser.add_argument("--executor", choices=["local", "ray"], default="local",
                        help="how the server runs jobs (ray: a local Ray instance the server starts)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="run the server under bench/profiled_serve.py and print where its CPU went in the window")
    parser.add_argument("--cprofile", action="store_true", help="with --profile: also keep cProfiles (DIR/*.prof)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="zooscope-load-") as tmp:
        folder = Path(tmp)
        reference, served = folder / "reference", folder / "served"
        alone_s = _train_alone(reference, _sweep_file(folder, "load", args.steps))
        shutil.copytree(reference, served, ignore=shutil.ignore_patterns("owner.json"))
        server = Server(served, folder / "server.log", args.executor, args.profile, args.cprofile)
        tally = Tally()
        try:
            names = asyncio.run(_scenario(server, served, folder, args, tally))
            _wait_settled(server, served, names)
        finally:
            server.stop()
        log = server.log()
        if "Traceback" in log:
            tally.errors.append("server log has a traceback:\n" + log[-3000:])
        rows = check_rows(reference, served, names)
    text = report(args, tally, names, alone_s, rows, time.perf_counter() - t_start)
    if args.profile is not None:
        text += "\n" + cpu_breakdown(args.profile, tally.window_runs)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    return 0 if not tally.errors and not rows[0] else 1


if __name__ == "__main__":
    sys.exit(main())
