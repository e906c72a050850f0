"""Executors start workers for jobs. The local one runs each job in its own process.

Every executor has the same small interface, which the :class:`~engine.jobs.Dispatcher`
drives: ``start(job_id) -> pid | None``, ``poll() -> list[Finished]``, ``running()``,
``free_slots``, ``kill(job_id)`` and ``shutdown()``. The Ray one lives in
:mod:`engine.jobs.ray_executor` and is imported only when the settings ask for it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from .context import job_dir

__all__ = ["Finished", "LocalExecutor", "make_executor", "worker_env", "worker_env_overrides"]


@dataclass(frozen=True)
class Finished:
    """A worker that ended: its exit status, the end of its log, and (optionally) why it ended."""

    job_id: str
    returncode: int
    log_tail: str
    why: str | None = None  # set when the exit status alone does not say it (e.g. a Ray task error)

    @property
    def reason(self) -> str:
        if self.why:
            return self.why
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
        self.max_workers = max_workers if max_workers is not None else int(os.environ.get("ZOOSCOPE_WORKERS", "1"))
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
    """The executor the settings ask for (``[jobs] executor``): local worker processes by default.

    ``executor = "ray"`` gives a :class:`~engine.jobs.ray_executor.RayExecutor` (needs
    ``pip install zooscope[ray]``). Its number of jobs at once is ``workers`` when the
    settings name it, else as many tasks as the Ray cluster has CPUs for.
    """
    from engine.settings import load_settings

    settings = settings or load_settings(store_path)
    jobs = settings.jobs
    if jobs.executor == "local":
        return LocalExecutor(store_path, max_workers=jobs.workers)
    if jobs.executor == "ray":
        from .ray_executor import RayExecutor, require_ray

        require_ray()
        return RayExecutor(store_path, address=jobs.ray_address, num_cpus=jobs.ray_num_cpus,
                           num_gpus=jobs.ray_num_gpus,
                           max_workers=jobs.workers if "workers" in jobs.model_fields_set else None)
    raise ValueError(f"executor {jobs.executor!r} is not available in this build; use 'local' or 'ray'")


def worker_env_overrides() -> dict[str, str]:
    """What a worker's environment adds to this machine's: numba's compiled code (UMAP) cached on disk.

    Computed where the worker runs (a Ray node computes its own), so the cache is on that node.
    """
    if os.environ.get("ZOOSCOPE_CACHE") == "off" or "NUMBA_CACHE_DIR" in os.environ:
        return {}
    cache = Path(os.environ.get("ZOOSCOPE_CACHE") or Path.home() / ".cache" / "zooscope")
    return {"NUMBA_CACHE_DIR": str(cache / "numba")}


def worker_env() -> dict[str, str]:
    """The environment of a local worker process: this process's, plus :func:`worker_env_overrides`."""
    return {**os.environ, **worker_env_overrides()}


def _tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_bytes()[-n:].decode(errors="replace")
    except FileNotFoundError:
        return ""
