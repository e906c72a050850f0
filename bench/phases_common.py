"""Shared helpers of the phase-diagram benchmarks (phases.py, pruning.py): timing, and training and
probing a zoo through the dispatcher and its workers, as the dashboard does."""

from __future__ import annotations

import os
import resource
import time

from engine.jobs import Dispatcher, probe_phase_cells


class Clock:
    """Wall and CPU seconds (this process plus its reaped workers) of a block, with the load average."""

    def __enter__(self):
        self.wall, self.cpu, self.load0 = time.perf_counter(), _cpu(), os.getloadavg()[0]
        return self

    def __exit__(self, *exc):
        self.wall, self.cpu = time.perf_counter() - self.wall, _cpu() - self.cpu
        self.load1 = os.getloadavg()[0]

    def line(self, what: str) -> str:
        return (f"{what:<22} wall {self.wall:7.1f} s   CPU {self.cpu:7.1f} s   "
                f"load average {self.load0:.1f} -> {self.load1:.1f}")


def _cpu() -> float:
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def train(disp: Dispatcher, sweep) -> str:
    """Train ``sweep`` to the end; its zoo id."""
    zoo_id, job_id = disp.submit_sweep(sweep, owner="bench")
    (job,) = disp.run_until_done([job_id], poll_s=1.0)
    if job["status"] != "done":
        raise SystemExit(f"training failed: {job.get('error')}")
    return zoo_id


def probe(disp: Dispatcher, zoo_id: str, *kind_and_params) -> list:
    """Run a cell probe (``probe_phase_cells``' kind and params; ``sweep.cell`` by default) over every
    cell of the zoo and wait for it; the stored requests."""
    requests = probe_phase_cells(disp, zoo_id, *kind_and_params, owner="bench")
    jobs = [r.status.job["job_id"] for r in requests if r.status.state in ("queued", "running")]
    finished = disp.run_until_done(jobs, poll_s=1.0) if jobs else []
    failed = [j for j in finished if j["status"] != "done"]
    if failed:
        raise SystemExit(f"{len(failed)} probe jobs failed: {failed[0].get('error')}")
    return probe_phase_cells(disp, zoo_id, *kind_and_params, owner="bench")  # all stored now: nothing is queued
