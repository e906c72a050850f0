"""Workers that outlive the owner that started them.

A local worker runs in its own session (``start_new_session``), so when the owner is
killed (``kill -9``, an OOM kill) its workers keep running, outside any worker cap,
and keep writing result bundles for a job nobody tracks. The owner records each
worker it starts as ``inbox/<job>/worker.json``: pid, process start time and host,
so that the next owner can tell that very process from an unrelated one that was
given the same pid later. On start, the next owner stops the workers it finds
still running (:func:`stop_orphan`) before it fails their jobs; a bundle that
arrives for a job that has ended is refused by the store anyway.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from pathlib import Path

from store.processes import process_is_running, process_start_time

from .context import job_dir

__all__ = ["record_worker", "stop_orphan"]

_WORKER = "worker.json"


def record_worker(store_path: Path, job_id: str, pid: int) -> None:
    """Record the worker process of ``job_id`` (call right after starting it)."""
    path = job_dir(store_path, job_id) / _WORKER
    tmp = path.with_name(f".{_WORKER}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"pid": pid, "pid_started": process_start_time(pid), "host": socket.gethostname()}))
    os.replace(tmp, path)


def stop_orphan(store_path: Path, job_id: str, *, wait_s: float = 10.0) -> str | None:
    """Stop the recorded worker of ``job_id`` if it still runs; returns what was done, or None.

    The worker's whole process group is killed (SIGKILL: its job is failed anyway),
    but only when pid, start time and host all match the record: a recycled pid is
    left alone. A worker on another host cannot be stopped from here; that is said.
    """
    try:
        record = json.loads((job_dir(store_path, job_id) / _WORKER).read_text())
    except (FileNotFoundError, ValueError):
        return None
    pid, started = record.get("pid"), record.get("pid_started")
    if not isinstance(pid, int):
        return None
    if record.get("host") != socket.gethostname():
        return (f"its worker (pid {pid} on host {record.get('host')}) may still run there; this owner cannot stop "
                "it, and will refuse what it writes")
    if not process_is_running(pid, started):
        return None
    try:
        os.killpg(pid, signal.SIGKILL)  # the worker leads its own session: its children go too
    except ProcessLookupError:
        return None
    except PermissionError:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while process_is_running(pid, started) and time.monotonic() < deadline:
        time.sleep(0.05)
    return f"its worker (pid {pid}) was still running and has been stopped"
