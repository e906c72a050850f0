"""``python bench/profiled_serve.py OUTDIR [streamlit options]``: ``engine.serve`` with a CPU breakdown.

For ``bench/load_test.py --profile DIR``. Splits the server process's CPU time between

- the script threads (Streamlit's ``ScriptRunner._run_script_thread``: the pages' own code, plus
  Streamlit's per-run work done there: widget state, element protos, Plotly's JSON),
- the event-loop thread (the main thread: websocket I/O, ``ForwardMsg`` serialisation, HTTP),
- the dispatcher thread (ticks: ingesting result bundles, starting and polling workers),
- everything else (the other threads, the interpreter's start),

and, with ``ZOOSCOPE_BENCH_CPROFILE=1``, keeps a cProfile timed by each thread's CPU clock (lock waits and
GIL waits do not count) of the script threads (all runs merged)
and of the event-loop thread. SIGUSR1 writes ``OUTDIR/cpu-<n>.json`` (the load test sends one at each
end of its window; the profiles then cover the window only: ``OUTDIR/script.prof``, ``OUTDIR/loop.prof``,
read them with ``pstats``); stopping the server (SIGTERM) writes ``OUTDIR/cpu.json``. Measuring only, nothing in
the served pages changes; cProfile roughly doubles the CPU of what it profiles.
"""

from __future__ import annotations

import cProfile
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _thread_cpu(native_id: int) -> float:
    """CPU seconds (user + system) of one thread of this process, from /proc."""
    fields = Path(f"/proc/self/task/{native_id}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Breakdown:
    def __init__(self, out: Path, profile: bool):
        self.out = out
        self.profile = profile
        self.lock = threading.Lock()
        self.script_cpu = 0.0
        self.script_threads = 0
        self.script_stats = None  # pstats.Stats merged from every script thread
        self.loop_prof = cProfile.Profile(time.thread_time) if profile else None

    def install(self) -> None:
        from streamlit.runtime.scriptrunner import script_runner

        original = script_runner.ScriptRunner._run_script_thread
        me = self

        def counted(runner) -> None:
            t0 = time.thread_time()
            prof = cProfile.Profile(time.thread_time) if me.profile else None
            if prof is not None:
                prof.enable()
            try:
                return original(runner)
            finally:
                if prof is not None:
                    prof.disable()
                spent = time.thread_time() - t0
                with me.lock:
                    me.script_cpu += spent
                    me.script_threads += 1
                    if prof is not None:
                        me._merge(prof)

        script_runner.ScriptRunner._run_script_thread = counted

    def _merge(self, prof: cProfile.Profile) -> None:
        import pstats

        if self.script_stats is None:
            self.script_stats = pstats.Stats(prof)
        else:
            self.script_stats.add(prof)

    def snapshot(self) -> dict:
        """Process CPU, script-thread CPU so far, and the CPU of every live thread by name."""
        threads = {t.native_id: t.name for t in threading.enumerate() if t.native_id}
        per_thread: dict[str, float] = {}
        for tid in os.listdir("/proc/self/task"):
            try:
                name = threads.get(int(tid), "other")
                per_thread[name] = per_thread.get(name, 0.0) + _thread_cpu(int(tid))
            except OSError:
                pass
        stat = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(stat[11]) + int(stat[12])) / os.sysconf("SC_CLK_TCK")
        with self.lock:
            return {"process_cpu_s": total, "script_threads_cpu_s": self.script_cpu,
                    "script_threads": self.script_threads, "live_threads_cpu_s": per_thread}

    def on_signal(self, *_) -> None:
        """SIGUSR1: write ``OUTDIR/cpu-<n>.json`` (the load test sends one at each end of its window)."""
        self.out.mkdir(parents=True, exist_ok=True)
        n = len(list(self.out.glob("cpu-*.json")))
        (self.out / f"cpu-{n}.json").write_text(json.dumps(self.snapshot(), indent=1))
        if self.loop_prof is None:
            return
        if n == 0:  # the window starts: profiles cover it only
            self.loop_prof.disable()
            self.loop_prof = cProfile.Profile(time.thread_time)
            with self.lock:
                self.script_stats = None
            self.loop_prof.enable()
        elif n == 1:  # the window ends
            self.loop_prof.disable()
            self.loop_prof.dump_stats(str(self.out / "loop.prof"))
            with self.lock:
                if self.script_stats is not None:
                    self.script_stats.dump_stats(str(self.out / "script.prof"))
                self.profile = False

    def dump(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / "cpu.json").write_text(json.dumps(self.snapshot(), indent=1))
        if self.profile and self.script_stats is not None:  # no window marked: the whole life
            self.script_stats.dump_stats(str(self.out / "script.prof"))
            self.loop_prof.disable()
            self.loop_prof.dump_stats(str(self.out / "loop.prof"))


def main() -> None:
    out = Path(sys.argv[1])
    breakdown = Breakdown(out, os.environ.get("ZOOSCOPE_BENCH_CPROFILE") == "1")
    breakdown.install()
    signal.signal(signal.SIGUSR1, breakdown.on_signal)
    from engine import serve

    if breakdown.loop_prof is not None:
        breakdown.loop_prof.enable()
    try:
        serve.main(sys.argv[2:])
    finally:
        breakdown.dump()


if __name__ == "__main__":
    main()
