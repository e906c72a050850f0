"""Runs logged from a user's own training script (``engine.tracking``), as the store sees them.

A logging script never opens the catalog. Like a worker, it writes artifacts and
result bundles, to ``inbox/track-<run_id>/part-*`` (no job row: the bundle's
manifest carries a ``tracking`` object instead), and keeps a writer record
``inbox/track-<run_id>/writer.json`` (pid, process start time, host) whose
modification time is its heartbeat. The owner

- places a logged run in its zoo when it ingests the run's first rows: the newest
  zoo of that name and owner, created if there is none (zoo names are not unique
  in a store; a zoo of the same name that another owner made is left alone);
- marks a logged run ``stopped`` (:meth:`LoggedRunsCatalog.stop_dead_logged_runs`)
  once its script is gone without closing it: on the owner's host when the
  recorded process no longer runs, from another host when its heartbeat is older
  than ten heartbeat periods. Rows of every complete bundle are kept.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from store.bundles import list_bundles
from store.core import StoreCore
from store.errors import BundleError
from store.paths import StoreLayout, as_layout
from store.processes import process_is_running, process_start_time
from store.rows import utcnow

__all__ = ["LoggedRunsCatalog", "logged_run_inbox", "logged_run_job_id", "record_logged_writer",
           "release_logged_writer", "touch_logged_writer", "STALE_HEARTBEATS"]

_PREFIX = "track-"
_WRITER = "writer.json"
STALE_HEARTBEATS = 10  # a writer on another host is gone after this many heartbeat periods without one
_MIN_STALE_S = 60.0


def logged_run_job_id(run_id: str) -> str:
    """The inbox folder name (the bundles' ``job_id``) of logged run ``run_id``."""
    return f"{_PREFIX}{run_id}"


def logged_run_inbox(store_path: str | os.PathLike[str] | StoreLayout, run_id: str) -> Path:
    """``<store>/inbox/track-<run_id>``: where a logged run's bundles and writer record go."""
    return as_layout(store_path).inbox / logged_run_job_id(run_id)


def record_logged_writer(store_path: str | os.PathLike[str] | StoreLayout, run_id: str, *,
                         heartbeat_s: float) -> Path:
    """Record this process as the writer of logged run ``run_id`` (before its first bundle); returns the file."""
    folder = logged_run_inbox(store_path, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    pid = os.getpid()
    record = {"run_id": run_id, "pid": pid, "pid_started": process_start_time(pid), "host": socket.gethostname(),
              "heartbeat_s": float(heartbeat_s), "started_at": utcnow().isoformat()}
    path = folder / _WRITER
    tmp = folder / f".{_WRITER}.{pid}.tmp"
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)
    return path


def touch_logged_writer(store_path: str | os.PathLike[str] | StoreLayout, run_id: str) -> None:
    """A heartbeat: set the writer record's modification time to now (no-op once it is gone)."""
    try:
        os.utime(logged_run_inbox(store_path, run_id) / _WRITER)
    except FileNotFoundError:
        pass


def release_logged_writer(store_path: str | os.PathLike[str] | StoreLayout, run_id: str) -> None:
    """Remove the writer record (after the run's last bundle) and the folder if nothing else is left."""
    folder = logged_run_inbox(store_path, run_id)
    (folder / _WRITER).unlink(missing_ok=True)
    try:
        folder.rmdir()
    except OSError:  # bundles not ingested yet: the owner removes the folder with the last one
        pass


def _writer_gone(folder: Path) -> tuple[str, datetime | None] | None:
    """Why the run's writer is gone (and its last sign of life), or None while it may still write."""
    path = folder / _WRITER
    try:
        record = json.loads(path.read_text())
        beat = path.stat().st_mtime
    except FileNotFoundError:
        return (f"its writer record {path} is gone while the run was still open (the script ended without "
                "closing it, or the file was removed)", None)
    except ValueError:
        return f"its writer record {path} is unreadable", None
    last = datetime.fromtimestamp(beat, UTC).replace(tzinfo=None)
    pid, host = record.get("pid"), record.get("host")
    who = f"the script (pid {pid} on host {host})"
    if host == socket.gethostname():
        if isinstance(pid, int) and process_is_running(pid, record.get("pid_started")):
            return None
        return (f"{who} ended without closing the run (killed, or it crashed before it could say so); "
                "everything up to its last complete bundle is kept", last)
    period = record.get("heartbeat_s")
    period = float(period) if isinstance(period, int | float) and period > 0 else 30.0
    silent = time.time() - beat
    if silent <= max(_MIN_STALE_S, STALE_HEARTBEATS * period):
        return None
    return (f"no heartbeat from {who} for {silent:.0f} s (it beats every {period:g} s); the run is taken as "
            "ended without being closed; everything up to its last complete bundle is kept", last)


class LoggedRunsCatalog(StoreCore):
    """What the owner does for runs logged by ``engine.tracking``: zoo placement, stale-writer detection."""

    def _place_logged_run(self, con, info: Any, tables: Mapping[str, Any]) -> dict[str, Any]:
        """Inside the ingest transaction: point the bundle's run rows at the zoo they belong to."""
        import pyarrow as pa

        tables = dict(tables)
        run = tables.get("run")
        if run is None or "zoo_id" not in run.column_names or run.num_rows == 0:
            return tables
        if not isinstance(info, dict) or not all(isinstance(info.get(k), str) for k in ("zoo_name", "zoo_id")):
            raise BundleError("a tracking bundle's manifest needs 'tracking': {'zoo_name': str, 'zoo_id': str, "
                              f"'zoo_owner': str or null}}; got {str(info)[:80]!r}")
        run_ids = run.column("run_id").to_pylist()
        # fetchall, not fetchone: a result left unread blocks the connection's next statement
        others = con.execute("SELECT run_id FROM run WHERE list_contains(?, run_id) AND origin IS DISTINCT FROM "
                             "'logged'", [run_ids]).fetchall()
        if others:
            raise BundleError(f"run {others[0][0]} exists and was not logged from a script; a tracking bundle "
                              "may only write logged runs")
        rows = con.execute("SELECT zoo_id FROM run WHERE list_contains(?, run_id) AND zoo_id IS NOT NULL LIMIT 1",
                           [run_ids]).fetchall()
        if not rows:
            rows = con.execute(
                "SELECT zoo_id FROM zoo WHERE name = ? AND owner IS NOT DISTINCT FROM ? "
                "ORDER BY created_at DESC, zoo_id LIMIT 1", [info["zoo_name"], info.get("zoo_owner")]).fetchall()
        row = rows[0] if rows else None
        if row is None:
            con.execute("INSERT INTO zoo (zoo_id, name, sweep_json, created_at, owner) VALUES (?, ?, NULL, ?, ?)",
                        [info["zoo_id"], info["zoo_name"], utcnow(), info.get("zoo_owner")])
            self._touch("zoo")
            row = (info["zoo_id"],)
        index = run.column_names.index("zoo_id")
        tables["run"] = run.set_column(index, "zoo_id", pa.array([row[0]] * run.num_rows, pa.string()))
        return tables

    def registered_dataset_names(self) -> list[str]:
        """Names in the store's ``dataset`` table (datasets registered once by name), sorted."""
        return [row["name"] for row in self._dicts("SELECT name FROM dataset ORDER BY name")]

    def logged_run_datasets(self, zoo_id: str) -> list[dict[str, Any]]:
        """``run_id, name, dataset`` of the zoo's logged runs (the dataset name from their config)."""
        rows = self._dicts("SELECT run_id, name, json_extract_string(config_json, '$.dataset.name') AS dataset "
                           "FROM run WHERE zoo_id = ? AND origin = 'logged' ORDER BY name, run_id", [zoo_id])
        return rows

    def stop_dead_logged_runs(self) -> list[str]:
        """Mark ``stopped`` every logged run left ``running`` whose script is gone; returns their ids.

        A run with a complete bundle still waiting in its inbox is left for the next
        ingest (its script may have closed it in that bundle). The stopped run's
        ``message`` says how it was found; its incomplete bundles (half-written when the
        script died) and its writer record are removed.
        """
        self._require_owner("mark stopped runs")
        running = self._dicts("SELECT run_id FROM run WHERE origin = 'logged' AND status = 'running'")
        if not running:
            return []
        waiting = {b.job_id for b in list_bundles(self._layout) if b.complete}
        stopped = []
        for run_id in (r["run_id"] for r in running):
            job_id = logged_run_job_id(run_id)
            if job_id in waiting:
                continue
            folder = logged_run_inbox(self._layout, run_id)
            verdict = _writer_gone(folder)
            if verdict is None:
                continue
            message, last_beat = verdict
            fields: dict[str, Any] = {"status": "stopped", "message": message}
            if last_beat is not None:
                fields["finished_at"] = last_beat
            self.update_run(run_id, **fields)
            shutil.rmtree(folder, ignore_errors=True)  # the writer record and any half-written bundle
            stopped.append(run_id)
        return stopped
