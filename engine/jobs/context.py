"""What a running job sees: progress, cancellation, artifacts and result bundles.

A job runs in a worker process that never opens the catalog. It writes tensors to
``artifacts/`` and rows to result bundles under ``inbox/<job-id>/``; the owner of the
store ingests them. Progress and cancellation travel through two small files in the
job's folder, so the owner never blocks on a worker.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import store

__all__ = ["JobCancelled", "JobContext", "job_dir", "read_progress", "request_cancel"]


class JobCancelled(Exception):
    """Raised inside a job when its owner asked it to stop."""


def job_dir(store_path: Path, job_id: str) -> Path:
    return Path(store_path) / "inbox" / job_id


def write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    """Write ``payload`` as JSON to ``path`` by rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, path)


def read_progress(store_path: Path, job_id: str) -> dict[str, Any] | None:
    """The last progress a worker reported, or None."""
    path = job_dir(store_path, job_id) / "progress.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def request_cancel(store_path: Path, job_id: str) -> None:
    d = job_dir(store_path, job_id)
    d.mkdir(parents=True, exist_ok=True)
    (d / "cancel").touch()


class JobContext:
    """Handed to ``run_<kind>(spec, ctx)``.

    Parameters
    ----------
    store_path : Path
        The store folder (shared storage for remote workers).
    job_id : str
        The job being run.
    owner : str
        Who asked for it; recorded on every row the job makes.
    """

    def __init__(self, store_path: Path, job_id: str, owner: str = "local"):
        self.store_path = Path(store_path)
        self.job_id = job_id
        self.owner = owner
        self.dir = job_dir(self.store_path, job_id)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._part = 0
        self._last_progress = 0.0
        self._artifacts: list[dict[str, Any]] = []  # rows for artifacts written since the last bundle

    def progress(self, fraction: float, message: str = "", *, force: bool = False, **extra: Any) -> None:
        """Report progress in [0, 1]; throttled to a few writes a second."""
        now = time.monotonic()
        if not force and now - self._last_progress < 0.25:
            return
        self._last_progress = now
        payload = {"progress": max(0.0, min(1.0, float(fraction))), "message": message, "time": time.time(), **extra}
        write_json_atomic(self.dir / "progress.json", payload)

    def cancelled(self) -> bool:
        return (self.dir / "cancel").exists()

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise JobCancelled(f"job {self.job_id} was cancelled")

    def put_tensors(self, tensors: dict, kind: str = "weights") -> str:
        """Write tensors as a content-addressed artifact; returns its sha256."""
        sha = store.put_tensors_at(self.store_path, tensors)
        self._artifacts.append(store.artifact_row(self.store_path, sha, kind=kind))
        return sha

    def emit(self, tables: dict[str, list[dict[str, Any]]], **manifest: Any) -> None:
        """Write one result bundle (catalog table name -> rows); the owner ingests it."""
        tables = {name: rows for name, rows in tables.items() if rows}
        if self._artifacts:
            tables["artifact"] = self._artifacts
        if not tables:
            return
        store.write_bundle(self.store_path, self.job_id, tables, manifest or None, part=self._part)
        self._artifacts = []
        self._part += 1
