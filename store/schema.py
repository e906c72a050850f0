"""The catalog schema and its migrations.

The schema version is ``len(MIGRATIONS)``; ``meta.schema_version`` records the
version a catalog is at. Opening a store runs the pending migrations in order,
each in its own transaction. Never edit a released migration: append a new one
and update :data:`COLUMNS` to match (a test checks they agree).
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

from store.errors import StoreVersionError

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "COLUMNS",
    "KEYS",
    "RUN_STATUSES",
    "JOB_STATUSES",
    "migrate",
    "schema_version",
]

# "stopped": a run logged from a user's script whose process ended without closing the run.
RUN_STATUSES = ("queued", "running", "done", "diverged", "failed", "cancelled", "stopped")
_V1_RUN_STATUSES = ("queued", "running", "done", "diverged", "failed", "cancelled")
JOB_STATUSES = ("queued", "running", "done", "failed", "cancelled")


def _in(values: tuple[str, ...]) -> str:
    return "(" + ", ".join(f"'{v}'" for v in values) + ")"


def _v1_core_catalog(con: duckdb.DuckDBPyConnection) -> None:
    """Zoos, runs, checkpoints, metrics, artifacts, probes, jobs."""
    con.execute(f"""
        CREATE TABLE zoo (
            zoo_id TEXT PRIMARY KEY, name TEXT NOT NULL, sweep_json TEXT,
            created_at TIMESTAMP, owner TEXT);
        CREATE TABLE run (
            run_id TEXT PRIMARY KEY, zoo_id TEXT, config_json TEXT, hparams_json TEXT,
            seed BIGINT,
            status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN {_in(_V1_RUN_STATUSES)}),
            device TEXT, diverged_step BIGINT, started_at TIMESTAMP, finished_at TIMESTAMP,
            wall_s DOUBLE, owner TEXT);
        CREATE TABLE checkpoint (
            checkpoint_id TEXT PRIMARY KEY, run_id TEXT NOT NULL, step BIGINT NOT NULL,
            epoch DOUBLE, artifact_sha TEXT, train_loss DOUBLE, train_acc DOUBLE,
            test_loss DOUBLE, test_acc DOUBLE, created_at TIMESTAMP,
            UNIQUE (run_id, step));
        CREATE TABLE metric (
            run_id TEXT NOT NULL, step BIGINT NOT NULL, split TEXT NOT NULL, name TEXT NOT NULL,
            value DOUBLE, PRIMARY KEY (run_id, step, split, name));
        CREATE TABLE artifact (
            sha TEXT PRIMARY KEY, size_bytes BIGINT, kind TEXT, created_at TIMESTAMP);
        CREATE TABLE probe (
            probe_id TEXT PRIMARY KEY, key TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
            params_json TEXT, inputs_json TEXT, artifact_sha TEXT, result_json TEXT,
            code_version TEXT, owner TEXT, created_at TIMESTAMP);
        CREATE TABLE job (
            job_id TEXT PRIMARY KEY, kind TEXT NOT NULL, spec_json TEXT,
            status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN {_in(JOB_STATUSES)}),
            progress DOUBLE DEFAULT 0, message TEXT, owner TEXT, created_at TIMESTAMP,
            started_at TIMESTAMP, finished_at TIMESTAMP, error TEXT);
    """)


def _v2_bundles_reports_indexes(con: duckdb.DuckDBPyConnection) -> None:
    """Bundle bookkeeping, reports, run names, job pid/zoo, lookup indexes."""
    con.execute("""
        CREATE TABLE bundle (
            bundle_id TEXT PRIMARY KEY, job_id TEXT NOT NULL, ingested_at TIMESTAMP, n_rows BIGINT);
        CREATE TABLE report (
            report_id TEXT PRIMARY KEY, title TEXT NOT NULL, author TEXT, created_at TIMESTAMP,
            body_json TEXT);
        ALTER TABLE run ADD COLUMN name TEXT;
        ALTER TABLE job ADD COLUMN pid BIGINT;
        ALTER TABLE job ADD COLUMN zoo_id TEXT;
        CREATE INDEX run_zoo_idx ON run (zoo_id);
        CREATE INDEX checkpoint_run_idx ON checkpoint (run_id);
        CREATE INDEX metric_run_idx ON metric (run_id);
        CREATE INDEX bundle_job_idx ON bundle (job_id);
    """)


def _v3_provenance_datasets(con: duckdb.DuckDBPyConnection) -> None:
    """Where a run came from and what built it, the 'stopped' run status; datasets registered by name.

    DuckDB cannot alter a CHECK constraint, so the run table is rebuilt with every row copied.
    """
    con.execute(f"""
        CREATE TABLE run_v3 (
            run_id TEXT PRIMARY KEY, zoo_id TEXT, config_json TEXT, hparams_json TEXT,
            seed BIGINT,
            status TEXT NOT NULL DEFAULT 'queued' CHECK (status IN {_in(RUN_STATUSES)}),
            device TEXT, diverged_step BIGINT, started_at TIMESTAMP, finished_at TIMESTAMP,
            wall_s DOUBLE, owner TEXT, name TEXT, origin TEXT DEFAULT 'trained', built_by_json TEXT);
        INSERT INTO run_v3 SELECT run_id, zoo_id, config_json, hparams_json, seed, status, device,
            diverged_step, started_at, finished_at, wall_s, owner, name, 'trained', NULL FROM run;
        DROP INDEX run_zoo_idx;
        DROP TABLE run;
        ALTER TABLE run_v3 RENAME TO run;
        CREATE INDEX run_zoo_idx ON run (zoo_id);
        CREATE TABLE dataset (
            name TEXT PRIMARY KEY, spec_json TEXT NOT NULL, info_json TEXT, owner TEXT,
            created_at TIMESTAMP);
    """)


def _v4_run_message(con: duckdb.DuckDBPyConnection) -> None:
    """Why a run ended as it did: the error of a logged run that failed, how a stopped one was found."""
    con.execute("ALTER TABLE run ADD COLUMN message TEXT")


MIGRATIONS: list[Callable[[duckdb.DuckDBPyConnection], None]] = [
    _v1_core_catalog,
    _v2_bundles_reports_indexes,
    _v3_provenance_datasets,
    _v4_run_message,
]
SCHEMA_VERSION = len(MIGRATIONS)

# Columns of every table at SCHEMA_VERSION, in order. Columns ending in
# ``_json`` hold JSON text. Used to validate writes and bundles without a
# connection (workers never open the catalog).
COLUMNS: dict[str, tuple[str, ...]] = {
    "zoo": ("zoo_id", "name", "sweep_json", "created_at", "owner"),
    "run": (
        "run_id", "zoo_id", "config_json", "hparams_json", "seed", "status", "device",
        "diverged_step", "started_at", "finished_at", "wall_s", "owner", "name",
        "origin",  # 'trained' (here), 'logged' (engine.tracking from a script) or 'imported'
        "built_by_json",  # what code built the model: factory import path, kwargs, source hash
        "message",  # why it ended so: a logged run's error text, or how a stopped one was found
    ),
    "checkpoint": (
        "checkpoint_id", "run_id", "step", "epoch", "artifact_sha", "train_loss", "train_acc",
        "test_loss", "test_acc", "created_at",
    ),
    "metric": ("run_id", "step", "split", "name", "value"),
    "artifact": ("sha", "size_bytes", "kind", "created_at"),
    "probe": (
        "probe_id", "key", "kind", "params_json", "inputs_json", "artifact_sha", "result_json",
        "code_version", "owner", "created_at",
    ),
    "job": (
        "job_id", "kind", "spec_json", "status", "progress", "message", "owner", "created_at",
        "started_at", "finished_at", "error", "pid", "zoo_id",
    ),
    "bundle": ("bundle_id", "job_id", "ingested_at", "n_rows"),
    "report": ("report_id", "title", "author", "created_at", "body_json"),
    "dataset": ("name", "spec_json", "info_json", "owner", "created_at"),
}

# The identity of a row: what a re-delivered row collides on.
KEYS: dict[str, tuple[str, ...]] = {
    "zoo": ("zoo_id",),
    "run": ("run_id",),
    "checkpoint": ("run_id", "step"),
    "metric": ("run_id", "step", "split", "name"),
    "artifact": ("sha",),
    "probe": ("key",),
    "job": ("job_id",),
    "bundle": ("bundle_id",),
    "report": ("report_id",),
    "dataset": ("name",),
}


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """The catalog's schema version; 0 for an empty database."""
    has_meta = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'meta'"
    ).fetchone()[0]
    if not has_meta:
        return 0
    row = con.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row else 0


def check_version(version: int, *, where: str) -> None:
    """Refuse a catalog newer than this code."""
    if version > SCHEMA_VERSION:
        raise StoreVersionError(
            f"store {where} has schema version {version}, but this Zooscope only knows versions "
            f"up to {SCHEMA_VERSION}; upgrade Zooscope to open it"
        )


def migrate(con: duckdb.DuckDBPyConnection, *, where: str = "", target: int | None = None) -> int:
    """Run the pending migrations, one transaction each.

    Parameters
    ----------
    con : duckdb.DuckDBPyConnection
        A read-write connection to the catalog.
    where : str
        The store path, for error messages.
    target : int, optional
        Stop at this version (tests use it to build old catalogs). Default:
        :data:`SCHEMA_VERSION`.

    Returns
    -------
    int
        The version the catalog is at afterwards.

    Raises
    ------
    StoreVersionError
        If the catalog is newer than this code.
    """
    target = SCHEMA_VERSION if target is None else target
    con.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
    version = schema_version(con)
    check_version(version, where=where)
    for number in range(version + 1, target + 1):
        con.execute("BEGIN TRANSACTION")
        try:
            MIGRATIONS[number - 1](con)
            con.execute(
                "INSERT INTO meta VALUES ('schema_version', ?) "
                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
                [str(number)],
            )
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")
    return max(version, target)
