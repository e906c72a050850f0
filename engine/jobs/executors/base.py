"""What every executor is: the interface the dispatcher drives, and the pieces executors share.

An executor starts a worker for a job and reports when it ends; it never opens the
catalog. The :class:`~engine.jobs.Dispatcher` holds one and drives it through
:class:`Executor` only, so a new executor (a batch scheduler, say) is one class that
has these six members; nothing in the dispatcher changes.
"""

from __future__ import annotations

import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from ..context import job_dir

__all__ = ["Executor", "Finished", "log_tail", "worker_env_overrides", "worker_log_path"]


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


@runtime_checkable
class Executor(Protocol):
    """Where workers run. The dispatcher calls these from its one owner thread.

    ``free_slots`` is how many more jobs may start now (the global cap on jobs running
    at once); ``start`` returns the worker's pid when it is a process on this machine,
    else None; ``poll`` returns the workers that ended since the last call, each once.
    """

    @property
    def free_slots(self) -> int: ...

    def running(self) -> list[str]: ...

    def start(self, job_id: str) -> int | None: ...

    def poll(self) -> list[Finished]: ...

    def kill(self, job_id: str) -> None: ...

    def shutdown(self) -> None: ...


def worker_log_path(store_path: Path, job_id: str) -> Path:
    """The file a job's worker writes its output to, wherever it runs: ``inbox/<job>/worker.log``."""
    return job_dir(Path(store_path), job_id) / "worker.log"


def log_tail(path: Path, n: int = 2000) -> str:
    """The last ``n`` bytes of a worker's log as text; empty when the worker never wrote one."""
    try:
        return path.read_bytes()[-n:].decode(errors="replace")
    except FileNotFoundError:
        return ""


def worker_env_overrides() -> dict[str, str]:
    """What a worker's environment adds to this machine's: numba's compiled code (UMAP) cached on disk.

    Computed where the worker runs (a Ray node computes its own), so the cache is on that node.
    """
    if os.environ.get("ZOOSCOPE_CACHE") == "off" or "NUMBA_CACHE_DIR" in os.environ:
        return {}
    cache = Path(os.environ.get("ZOOSCOPE_CACHE") or Path.home() / ".cache" / "zooscope")
    return {"NUMBA_CACHE_DIR": str(cache / "numba")}
