"""The :class:`Store` and :func:`open_store`."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from store.artifacts import artifact_path, get_tensors_at, put_tensors_at
from store.bundles import BUNDLE_TABLES, IngestReport, list_bundles, read_bundle
from store.catalog_datasets import DatasetsCatalog
from store.catalog_jobs import JobsCatalog
from store.catalog_runs import RunsCatalog
from store.core import insert_arrow
from store.errors import BundleError, StoreError, StoreVersionError
from store.logged_runs import LoggedRunsCatalog
from store.ownership import OwnerLock, busy_error
from store.paths import StoreLayout, as_layout
from store.requests import RequestClaim, claim_requests_at, take_requests_at
from store.rows import utcnow
from store.schema import COLUMNS, SCHEMA_VERSION, check_version, migrate, schema_version

if TYPE_CHECKING:
    import torch

__all__ = ["Store", "open_store"]

# How each bundle table meets rows already in the catalog: runs and jobs are
# updated by later parts of a job (status, finish time, progress); the rest is
# immutable once written.
_INGEST_POLICY = {"zoo": "ignore", "run": "update", "artifact": "ignore", "checkpoint": "ignore",
                  "metric": "ignore", "probe": "update", "job": "update"}


class Store(RunsCatalog, JobsCatalog, DatasetsCatalog, LoggedRunsCatalog):
    """An open store: the DuckDB catalog plus the artifact, inbox and request folders.

    Get one with :func:`open_store`; use it as a context manager or call
    :meth:`close`. Methods are safe to call from several threads. Listing
    methods return pandas DataFrames; ``get_*`` methods return dicts with JSON
    columns parsed (``config_json`` -> ``config``) and raise
    :class:`~store.NotFoundError` for unknown ids.
    """

    @property
    def schema_version(self) -> int:
        """The catalog's schema version."""
        with self._mutex:
            return schema_version(self._connection())

    def table_counts(self) -> dict[str, int]:
        """Rows per catalog table."""
        return {table: self._scalar(f"SELECT count(*) FROM {table}") for table in COLUMNS}

    # -- artifacts --------------------------------------------------------------

    def put_tensors(self, tensors: Mapping[str, torch.Tensor], kind: str = "weights") -> str:
        """Write tensors as a content-addressed safetensors artifact and record it.

        Returns the sha256 hex of the file; equal tensors give the same sha and
        are not rewritten. See :func:`store.put_tensors_at` for workers.
        """
        self._require_owner("record an artifact")
        sha = put_tensors_at(self._layout, tensors)
        size = artifact_path(self._layout, sha).stat().st_size
        self._insert("artifact", [{"sha": sha, "size_bytes": size, "kind": kind, "created_at": utcnow()}],
                     on_conflict="ignore")
        return sha

    def get_tensors(self, sha: str) -> dict[str, torch.Tensor]:
        """Read an artifact back as CPU tensors; raises :class:`~store.CorruptArtifactError` if damaged."""
        return get_tensors_at(self._layout, sha)

    def artifact_path(self, sha: str) -> Path:
        """The file of artifact ``sha`` (it may not exist)."""
        return artifact_path(self._layout, sha)

    def has_artifact(self, sha: str) -> bool:
        """True if the artifact file exists (its hash is not checked)."""
        return artifact_path(self._layout, sha).is_file()

    def gc_artifacts(self, *, min_age_s: float = 3600.0) -> list[str]:
        """Delete artifact files no checkpoint or probe refers to; returns their shas.

        Files younger than ``min_age_s`` are kept: a worker may have written
        them for a bundle that is not ingested yet.
        """
        referenced = {row["sha"] for row in self._dicts(
            "SELECT artifact_sha AS sha FROM checkpoint WHERE artifact_sha IS NOT NULL "
            "UNION SELECT artifact_sha FROM probe WHERE artifact_sha IS NOT NULL")}
        cutoff = time.time() - min_age_s
        removed = []
        for path in self._layout.artifacts.glob("??/*.safetensors"):
            sha = path.name.removesuffix(".safetensors")
            if sha not in referenced and path.stat().st_mtime < cutoff:
                path.unlink()
                removed.append(sha)
        if removed:
            with self._tx() as con:
                con.execute("DELETE FROM artifact WHERE list_contains(?, sha)", [removed])
        return sorted(removed)

    # -- bundles ----------------------------------------------------------------

    def ingest_bundles(self, *, checkpoint: bool = True) -> IngestReport:
        """Ingest every complete result bundle in ``inbox/``, in (job, part) order.

        Each bundle goes in one transaction together with its ``bundle`` row,
        then its folder is removed. Incomplete bundles (no manifest) are left
        alone; malformed ones are reported in ``failed`` with nothing written;
        bundles ingested before are skipped (``duplicate``) and removed. When
        any was ingested and ``checkpoint`` is true, the batch ends with a
        :meth:`checkpoint`, so its rows are in ``store.duckdb`` itself, not
        only in the WAL. A bundle whose manifest has a ``tracking`` object (a run
        logged from a script, no job row) has its run placed in its zoo by name
        (:mod:`store.logged_runs`). Last, logged runs whose script is gone are
        marked ``stopped`` (:meth:`stop_dead_logged_runs`; ``stopped`` in the report).
        """
        self._require_owner("ingest bundles")
        self.check_files()
        report = IngestReport()
        for bundle in list_bundles(self._layout):
            bundle_id = bundle.bundle_id
            if not bundle.complete:
                report.incomplete.append(bundle_id)
                continue
            if self._scalar("SELECT count(*) FROM bundle WHERE bundle_id = ?", [bundle_id]):
                report.duplicate.append(bundle_id)
                _remove_bundle(bundle.path)
                continue
            job_status = self._scalar("SELECT status FROM job WHERE job_id = ?", [bundle.job_id])
            if job_status in _ENDED:
                report.refused[bundle_id] = _refuse_bundle(bundle, job_status)
                continue
            try:
                manifest, tables = read_bundle(bundle)
                self._ingest_tables(bundle_id, bundle.job_id, tables, manifest.get("tracking"))
            except (BundleError, duckdb.Error, ValueError) as exc:
                report.failed[bundle_id] = f"{type(exc).__name__}: {exc}"
                continue
            _remove_bundle(bundle.path)
            report.ingested.append(bundle_id)
        report.stopped = self.stop_dead_logged_runs()
        if (report.ingested or report.stopped) and checkpoint:
            self.checkpoint()
        return report

    def _ingest_tables(self, bundle_id: str, job_id: str, tables: Mapping[str, Any], tracking: Any = None) -> None:
        n_rows = sum(tbl.num_rows for tbl in tables.values())
        with self._tx() as con:
            if tracking is not None:
                tables = self._place_logged_run(con, tracking, tables)
            for name in BUNDLE_TABLES:
                if name in tables:
                    self._touch_rows(name, tables[name])
                    insert_arrow(con, name, tables[name], _INGEST_POLICY[name])
            self._touch("bundle")
            con.execute("INSERT INTO bundle VALUES (?, ?, ?, ?)", [bundle_id, job_id, utcnow(), n_rows])

    def discard_bundles(self, job_id: str) -> list[str]:
        """Remove a job's incomplete bundles (e.g. after its worker was killed); returns their ids."""
        self._require_owner("discard bundles")
        removed = []
        for bundle in list_bundles(self._layout):
            if bundle.job_id == job_id and not bundle.complete:
                _remove_bundle(bundle.path)
                removed.append(bundle.bundle_id)
        return removed

    # -- requests and export ----------------------------------------------------

    def take_requests(self) -> list[dict[str, Any]]:
        """Read and delete the requests dropped by CLI commands, oldest first.

        Each is a dict with ``request_id, kind, payload, created_at, pid, host``. What is deleted
        here is gone: a loop that applies requests uses :meth:`claim_requests`.
        """
        self._require_owner("take requests")
        return take_requests_at(self._layout)

    def claim_requests(self) -> list[RequestClaim]:
        """Claim and read the requests dropped by CLI commands, oldest first (:func:`store.requests.claim_requests_at`).

        Apply each ``claim.request`` between ``claim.begin()`` (False: do not apply it now) and
        ``claim.done()``: a crash before ``begin`` leaves it to be taken again, one after leaves it
        set aside, never run twice.
        """
        self._require_owner("take requests")
        return claim_requests_at(self._layout)

    def export_parquet(self, directory: str | os.PathLike[str]) -> list[Path]:
        """Write every catalog table to ``<directory>/<table>.parquet``; returns the files."""
        out = Path(directory).expanduser().absolute()
        out.mkdir(parents=True, exist_ok=True)
        files = []
        with self._mutex:
            con = self._connection()
            for table in (*COLUMNS, "meta"):
                target = out / f"{table}.parquet"
                quoted = str(target).replace("'", "''")
                con.execute(f"COPY {table} TO '{quoted}' (FORMAT parquet)")
                files.append(target)
        return files


# A bundle of a job in one of these states comes from a worker that outlived its job.
_ENDED = ("done", "failed", "cancelled")


def _refuse_bundle(bundle, job_status: str) -> str:
    """Set a bundle of an ended job aside (kept for inspection, never ingested); returns why."""
    kept = bundle.path.with_name(f"refused-{bundle.path.name}")
    if kept.exists():  # refused before, and written again
        kept = kept.with_name(f"{kept.name}.{time.time_ns()}")
    os.replace(bundle.path, kept)
    return (f"job {bundle.job_id} is {job_status}, so its result bundles are no longer accepted (a worker "
            f"that outlived its job wrote this one); nothing was written, the bundle is kept at {kept}")


def _remove_bundle(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    try:
        path.parent.rmdir()  # the job folder, once its last part is gone
    except OSError:
        pass


_DUCKDB_PID = re.compile(r"PID (\d+)")


def _connect(layout: StoreLayout, *, read_only: bool) -> duckdb.DuckDBPyConnection:
    try:
        con = duckdb.connect(str(layout.db), read_only=read_only)
    except duckdb.IOException as exc:
        if "lock" not in str(exc).lower():
            raise StoreError(f"cannot open catalog {layout.db}: {exc}") from exc
        pid = _DUCKDB_PID.search(str(exc))
        detail = f"DuckDB reports pid {pid.group(1)}" if pid else ""
        raise busy_error(layout, duckdb_detail=detail) from None
    con.execute("SET TimeZone = 'UTC'")  # naive TIMESTAMP columns hold UTC
    return con


def _check_read_only_version(con: duckdb.DuckDBPyConnection, layout: StoreLayout) -> None:
    version = schema_version(con)
    check_version(version, where=str(layout.root))
    if version < SCHEMA_VERSION:
        raise StoreVersionError(
            f"store {layout.root} has schema version {version}, older than this Zooscope's "
            f"{SCHEMA_VERSION}; open it once with owner=True (any `zooscope` command) to migrate it"
        )


def open_store(path: str | os.PathLike[str], *, owner: bool = True) -> Store:
    """Open (creating and migrating if needed) the store folder at ``path``.

    Parameters
    ----------
    path : str or path-like
        The store folder; see :func:`resolve_store_path` for the usual default.
    owner : bool
        True (default): become the single owner (read-write); the folder and
        catalog are created and migrated as needed. False: read-only
        inspection of an existing store that nobody owns.

    Raises
    ------
    StoreBusyError
        If another process owns the store (the message names it).
    StoreVersionError
        If the catalog is newer than this code (or, read-only, older).
    StoreError
        If ``owner=False`` and there is no store at ``path``.
    """
    layout = as_layout(path)
    if owner:
        layout.create()
    elif not layout.db.is_file():
        raise StoreError(f"no store at {layout.root} (no store.duckdb); create it with open_store(path) first")
    lock = OwnerLock.acquire(layout, exclusive=owner)
    try:
        con = _connect(layout, read_only=not owner)
        try:
            if owner:
                migrate(con, where=str(layout.root))
            else:
                _check_read_only_version(con, layout)
        except BaseException:
            con.close()
            raise
    except BaseException:
        lock.release()
        raise
    return Store(layout, con, lock, owner=owner)
