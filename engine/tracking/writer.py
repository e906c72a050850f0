"""A logged run's bundle writer: one background thread that writes artifacts and bundles in order.

The training loop hands over rows and weight snapshots and goes on; the thread hashes
and writes the safetensors artifacts and then the bundle (Parquet files fsynced, the
manifest last, by rename), one bundle at a time in the order they were handed over.
The queue is short, so a loop that checkpoints faster than the disk writes waits
instead of piling copies of its weights in memory. An error in the thread (a full
disk, a store folder removed) is raised on the loop's next call.
"""

from __future__ import annotations

import queue
import threading
from pathlib import Path
from typing import Any

import store

__all__ = ["BundleWriter", "Snapshot"]


class Snapshot:
    """A checkpoint waiting to be written: its row (``artifact_sha`` filled in by the writer) and CPU tensors."""

    __slots__ = ("row", "state")

    def __init__(self, row: dict[str, Any], state: dict):
        self.row, self.state = row, state


class BundleWriter:
    """Writes ``inbox/<job_id>/part-*`` bundles in order from a daemon thread."""

    def __init__(self, store_path: Path, job_id: str, manifest: dict[str, Any], *, max_pending: int = 4):
        self.store_path, self.job_id, self.manifest = store_path, job_id, manifest
        self.parts_written = 0
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._work, name=f"zooscope-bundles-{job_id[-8:]}", daemon=True)
        self._thread.start()

    def submit(self, tables: dict[str, Any], snapshots: list[Snapshot]) -> None:
        """Queue one bundle: ``tables`` (catalog table -> rows or a callable making them) and checkpoints."""
        self.raise_error()
        self._queue.put((tables, snapshots))

    def drain(self) -> None:
        """Wait until every queued bundle is written; raise what went wrong if anything did."""
        self._queue.join()
        self.raise_error()

    def close(self) -> None:
        """Drain, then stop the thread."""
        try:
            self.drain()
        finally:
            self._queue.put(None)
            self._thread.join(timeout=60)

    def raise_error(self) -> None:
        if self._error is not None:
            raise RuntimeError(f"logged run: writing to {self.store_path} failed ({type(self._error).__name__}: "
                               f"{self._error}); rows after the last written bundle are lost") from self._error

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                if self._error is None:  # after a failure nothing more is written: parts stay in order
                    self._write(*item)
            except BaseException as exc:  # noqa: BLE001 - handed to the loop's next call
                self._error = exc
            finally:
                self._queue.task_done()

    def _write(self, tables: dict[str, Any], snapshots: list[Snapshot]) -> None:
        tables = {name: rows() if callable(rows) else rows for name, rows in tables.items()}
        if snapshots:
            artifacts = list(tables.get("artifact", []))
            checkpoints = list(tables.get("checkpoint", []))
            for snap in snapshots:
                sha = store.put_tensors_at(self.store_path, snap.state)
                artifacts.append(store.artifact_row(self.store_path, sha))
                checkpoints.append({**snap.row, "artifact_sha": sha})
            tables["artifact"], tables["checkpoint"] = artifacts, checkpoints
        tables = {name: rows for name, rows in tables.items() if _has_rows(rows)}
        if not tables:
            return
        store.write_bundle(self.store_path, self.job_id, tables, self.manifest, part=self.parts_written)
        self.parts_written += 1


def _has_rows(rows: Any) -> bool:
    return rows.num_rows > 0 if hasattr(rows, "num_rows") else bool(rows)
