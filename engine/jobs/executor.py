"""Executors start workers for jobs. The local one runs each job in its own process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .context import job_dir

__all__ = ["Finished", "LocalExecutor", "make_executor"]


@dataclass(frozen=True)
class Finished:
    job_id: str
    returncode: int
    log_tail: str

    @property
    def reason(self) -> str:
        if self.returncode < 0:
            sig = signal.Signals(-self.returncode).name
            return f"worker process was killed by signal {-self.returncode} ({sig})"
        return f"worker process exited with status {self.returncode}"


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
        self.max_workers = max_workers or int(os.environ.get("ZOOSCOPE_WORKERS", "1"))
        self._procs: dict[str, subprocess.Popen] = {}

    @property
    def free_slots(self) -> int:
        return self.max_workers - len(self._procs)

    def running(self) -> list[str]:
        return list(self._procs)

    def start(self, job_id: str) -> int:
        log = open(job_dir(self.store_path, job_id) / "worker.log", "ab")
        proc = subprocess.Popen(
            [sys.executable, "-m", "engine.jobs.worker", str(self.store_path), job_id],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=worker_env(),
            cwd=Path(__file__).resolve().parents[2], start_new_session=True,
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
                done.append(Finished(job_id, rc, _tail(job_dir(self.store_path, job_id) / "worker.log")))
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


def make_executor(store_path: Path, settings=None):
    """The executor the settings ask for (``[jobs] executor``): local worker processes by default."""
    from engine.settings import load_settings

    settings = settings or load_settings(store_path)
    if settings.jobs.executor == "local":
        return LocalExecutor(store_path, max_workers=settings.jobs.workers)
    raise ValueError(f"executor {settings.jobs.executor!r} is not available in this build")


def worker_env() -> dict[str, str]:
    """The environment of a worker: numba's compiled code (UMAP) cached on disk and shared by all workers."""
    cache = Path(os.environ.get("ZOOSCOPE_CACHE") or Path.home() / ".cache" / "zooscope")
    env = dict(os.environ)
    if env.get("ZOOSCOPE_CACHE") != "off":
        env.setdefault("NUMBA_CACHE_DIR", str(cache / "numba"))
    return env


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_bytes()[-n:].decode(errors="replace")
    except FileNotFoundError:
        return ""
