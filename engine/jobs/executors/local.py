"""The local executor: each job in its own worker process on this machine."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from .base import Finished, log_tail, worker_env_overrides, worker_log_path

__all__ = ["LocalExecutor", "worker_env"]

# The repository root: a worker runs ``python -m engine.jobs.worker`` from here.
_ROOT = Path(__file__).resolve().parents[3]


class LocalExecutor:
    """Worker processes on this machine (``python -m engine.jobs.worker``), never threads in the server.

    Parameters
    ----------
    store_path : Path
        The store the workers write to.
    max_workers : int
        Jobs running at once; defaults to ``ZOOSCOPE_WORKERS`` or 1 (training uses every core).
    """

    def __init__(self, store_path: Path, max_workers: int | None = None):
        self.store_path = Path(store_path)
        self.max_workers = max_workers if max_workers is not None else int(os.environ.get("ZOOSCOPE_WORKERS", "1"))
        self._procs: dict[str, subprocess.Popen] = {}

    @property
    def free_slots(self) -> int:
        return self.max_workers - len(self._procs)

    def running(self) -> list[str]:
        return list(self._procs)

    def start(self, job_id: str) -> int:
        log = open(worker_log_path(self.store_path, job_id), "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.jobs.worker", str(self.store_path), job_id],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=worker_env(),
            cwd=_ROOT, start_new_session=True,
        )
        log.close()
        self._procs[job_id] = proc
        return proc.pid

    def poll(self) -> list[Finished]:
        done = []
        for job_id, proc in list(self._procs.items()):
            rc = proc.poll()
            if rc is not None:
                del self._procs[job_id]
                done.append(Finished(job_id, rc, log_tail(worker_log_path(self.store_path, job_id))))
        return done

    def kill(self, job_id: str) -> None:
        proc = self._procs.get(job_id)
        if proc is not None and proc.poll() is None:
            proc.kill()

    def shutdown(self) -> None:
        for job_id in list(self._procs):
            self.kill(job_id)
        for proc in self._procs.values():
            proc.wait(timeout=10)
        self._procs.clear()


def worker_env() -> dict[str, str]:
    """The environment of a local worker process: this process's, plus :func:`~.base.worker_env_overrides`."""
    return {**os.environ, **worker_env_overrides()}
