"""The connection-holding base of :class:`store.Store`.

It owns the DuckDB connection, the owner lock, and the few primitives the
table-specific mixins are written with: a transaction, row and DataFrame
reads, and bulk inserts with a conflict policy. SQL is composed only from
column names checked against :data:`store.schema.COLUMNS`; values are always
bound parameters.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import duckdb

from store.durability import file_identity, wal_path, wal_vanished
from store.errors import NotFoundError, StoreError, StoreFilesChangedError
from store.ownership import OwnerLock
from store.paths import StoreLayout
from store.rows import decode_row, encode_row, encode_rows, utcnow
from store.schema import COLUMNS, KEYS

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = ["StoreCore"]

log = logging.getLogger("zooscope.store")

Conflict = Literal["error", "ignore", "update"]
# Surrogate ids that stay with the first row when a row is updated on another key.
_SURROGATE = {"probe": "probe_id", "checkpoint": "checkpoint_id"}
# What a write transaction that names no table counts for (StoreCore.data_version).
_ALL_VERSIONED = ("zoo", "run", "checkpoint", "metric", "metric.probe", "artifact", "probe", "job", "bundle",
                  "report", "meta")


class StoreCore:
    """Connection, lock and SQL primitives. Use :func:`store.open_store` to get a :class:`store.Store`."""

    def __init__(self, layout: StoreLayout, con: duckdb.DuckDBPyConnection, lock: OwnerLock, *, owner: bool):
        self._layout = layout
        self._con: duckdb.DuckDBPyConnection | None = con
        self._owner_lock = lock
        self._is_owner = owner
        # Streamlit serves sessions from threads; one DuckDB connection must
        # not run two statements at once, so every access holds this lock.
        self._mutex = threading.RLock()
        self._tx_depth = 0
        # Per-table data versions (see data_version): bumped after each commit that wrote the table.
        self._versions: dict[str, int] = {}
        self._touched: set[str] = set()
        # Durability (see store/durability.py): the catalog file this owner opened,
        # whether the WAL holds commits not yet checkpointed, and why writes stopped.
        self._db_identity = file_identity(layout.db) if owner else None
        self._dirty = owner  # opening may have migrated
        self._fault: str | None = None

    # -- life cycle ---------------------------------------------------------

    @property
    def path(self) -> Path:
        """The store folder."""
        return self._layout.root

    @property
    def layout(self) -> StoreLayout:
        """The paths inside the store folder."""
        return self._layout

    @property
    def is_owner(self) -> bool:
        """True when opened with ``owner=True`` (read-write)."""
        return self._is_owner

    @property
    def closed(self) -> bool:
        return self._con is None

    def close(self) -> None:
        """Checkpoint (owner), close the catalog and release ownership. Idempotent."""
        with self._mutex:
            if self._con is not None:
                if self._is_owner and self._fault is None and not self._tx_depth:
                    try:
                        self.checkpoint()
                    except (StoreError, duckdb.Error) as exc:
                        log.error("store %s: no checkpoint at close: %s", self.path, exc)
                self._con.close()
                self._con = None
            self._owner_lock.release()

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("owner" if self._is_owner else "read-only")
        return f"Store({str(self.path)!r}, {state})"

    # -- durability -----------------------------------------------------------

    def checkpoint(self) -> bool:
        """Write committed changes from the WAL into ``store.duckdb`` (DuckDB ``CHECKPOINT``).

        Does nothing when nothing was committed since the last one. Checks the
        catalog files first (:meth:`check_files`). Returns whether it ran.
        """
        self._require_owner("checkpoint the catalog")
        with self._mutex:
            self.check_files()
            if not self._dirty:
                return False
            self._connection().execute("CHECKPOINT")
            self._dirty = False
            return True

    def check_files(self) -> None:
        """Raise :class:`~store.StoreFilesChangedError` if the catalog's files changed under this owner.

        ``store.duckdb`` deleted or replaced: this process's writes go to a file
        nobody will open again. ``store.duckdb.wal`` deleted while it held
        commits not yet checkpointed: they are checkpointed into ``store.duckdb``
        at once (so none is lost), then the error is raised. Either way every
        later write raises the same error, until the owner is restarted.
        """
        if not self._is_owner:
            return
        with self._mutex:
            if self._fault is None:
                self._fault = self._files_changed()
            if self._fault is not None:
                raise StoreFilesChangedError(self._fault)

    def _files_changed(self) -> str | None:
        db, pid = self._layout.db, os.getpid()
        now = file_identity(db)
        if now != self._db_identity:
            what = "deleted" if now is None else "replaced by another file"
            return (f"catalog {db} was {what} while this process (pid {pid}) owned the store: what it wrote "
                    "since then is in a file nobody will open again. It refuses further writes. Find what "
                    "removed the file (a cleanup job, a restore, a person), put the catalog back from a "
                    "backup if needed, and restart the owner")
        con = self._connection()
        if not wal_vanished(con, db):
            return None
        con.execute("CHECKPOINT")  # store.duckdb is intact and DuckDB still holds every commit
        self._dirty = False
        return (f"{wal_path(db)} (the catalog's write-ahead log) was deleted while this process (pid {pid}) "
                f"owned the store and held commits not yet in {db.name}; they were saved into {db.name} "
                f"by a checkpoint, so nothing is lost, but something deletes files in {self.path}. This owner "
                "refuses further writes: stop whatever deletes files there (a cleanup job, a sync tool, a "
                "person), then restart it")

    # -- primitives -----------------------------------------------------------

    def _connection(self) -> duckdb.DuckDBPyConnection:
        if self._con is None:
            raise StoreError(f"store {self.path} is closed; open it again with store.open_store({str(self.path)!r})")
        return self._con

    def _require_owner(self, what: str = "write to the catalog") -> None:
        if not self._is_owner:
            raise StoreError(
                f"cannot {what}: store {self.path} was opened read-only (owner=False); "
                "open it with owner=True"
            )

    @contextmanager
    def _tx(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A write transaction; nested uses join the outer one."""
        self._require_owner()
        with self._mutex:
            con = self._connection()
            if self._fault is not None:
                raise StoreFilesChangedError(self._fault)
            if self._tx_depth:
                self._tx_depth += 1
                try:
                    yield con
                finally:
                    self._tx_depth -= 1
                return
            con.execute("BEGIN TRANSACTION")
            self._tx_depth = 1
            self._touched = set()
            try:
                yield con
                con.execute("COMMIT")
                self._dirty = True
                self._bump_versions()
            except BaseException:
                try:
                    con.execute("ROLLBACK")
                except duckdb.Error:
                    pass  # a failed COMMIT has already rolled back
                _drop_stale_views(con)
                raise
            finally:
                self._tx_depth = 0

    # -- data versions ----------------------------------------------------------

    def data_version(self, *tables: str) -> tuple[int, ...]:
        """How many committed write transactions of this process touched each of ``tables``.

        A key for cached reads that must change whenever what they read changes, and only then:
        ``runs_table`` reads ``run``, ``checkpoint`` and probe metrics, so its cache need not be
        dropped when a training job hands in metric rows. Names are catalog tables, plus
        ``"metric.probe"`` for metric rows of split ``"probe"`` (a ``"metric"`` write that adds
        such rows counts for both). No query: the owner is the only writer (single-writer rule),
        so its own commits are every change. A write transaction that does not say which tables
        it wrote (raw SQL) counts for every table. Read-only stores never change: always zeros.
        """
        return tuple(self._versions.get(table, 0) for table in tables)

    def _touch(self, *tables: str) -> None:
        """Inside a write transaction: it writes ``tables`` (see :meth:`data_version`)."""
        self._touched.update(tables)

    def _touch_rows(self, table: str, rows: pa.Table) -> None:
        self._touch(table)
        if table == "metric" and rows.num_rows:
            import pyarrow as pa
            import pyarrow.compute as pc

            try:
                probe = bool(pc.any(pc.equal(rows.column("split"), "probe")).as_py())
            except (KeyError, pa.ArrowException):  # no such column, or one compute cannot compare: assume so
                probe = True
            if probe:
                self._touch("metric.probe")

    def _bump_versions(self) -> None:
        touched = self._touched or (*self._versions, *_ALL_VERSIONED)  # undeclared: every table
        for table in set(touched):
            self._versions[table] = self._versions.get(table, 0) + 1
        self._touched = set()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group writes into one transaction: all of them land, or (on an exception) none.

        >>> with st.transaction():
        ...     zoo_id = st.create_zoo("z")
        ...     st.add_runs([{"zoo_id": zoo_id}])   # fails -> the zoo is not recorded either
        """
        with self._tx():
            yield

    def _df(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> pd.DataFrame:
        with self._mutex:
            return self._connection().execute(sql, params).df()

    def _dicts(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> list[dict[str, Any]]:
        with self._mutex:
            cursor = self._connection().execute(sql, params)
            names = [d[0] for d in cursor.description]
            return [dict(zip(names, row)) for row in cursor.fetchall()]

    def _scalar(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> Any:
        with self._mutex:  # fetch every row: an unfinished result blocks the connection's next register()
            rows = self._connection().execute(sql, params).fetchall()
        return rows[0][0] if rows else None

    def _get(self, table: str, column: str, value: Any, *, what: str | None = None) -> dict[str, Any]:
        rows = self._dicts(f"SELECT * FROM {table} WHERE {column} = ?", [value])
        if not rows:
            raise NotFoundError(f"no {what or table} with {column} {value!r} in store {self.path}")
        return decode_row(rows[0])

    def _insert(self, table: str, rows: Sequence[Mapping[str, Any]] | pa.Table, on_conflict: Conflict = "error") -> int:
        """Insert caller rows (encoded here) or an Arrow table; returns rows offered."""
        import pyarrow as pa

        tbl = rows if isinstance(rows, pa.Table) else pa.Table.from_pylist(encode_rows(table, rows))
        try:
            with self._tx() as con:
                self._touch_rows(table, tbl)
                insert_arrow(con, table, tbl, on_conflict)
        except duckdb.ConstraintException as exc:
            raise ValueError(f"cannot write {table} rows to store {self.path}: {exc}") from None
        return tbl.num_rows

    def _update(self, table: str, key: str, key_value: Any, fields: Mapping[str, Any]) -> None:
        row = encode_row(table, fields)
        if not row:
            return
        assignments = ", ".join(f"{column} = ?" for column in row)
        with self._tx() as con:
            self._touch(table, *(("metric.probe",) if table == "metric" else ()))
            count = con.execute(
                f"UPDATE {table} SET {assignments} WHERE {key} = ?", [*row.values(), key_value]
            ).fetchone()[0]
        if count == 0:
            raise NotFoundError(f"no {table} with {key} {key_value!r} in store {self.path}")

    def _stamp_times(self, table: str, key: str, key_value: str, fields: dict[str, Any],
                     terminal: tuple[str, ...]) -> dict[str, Any]:
        """Add ``started_at``/``finished_at`` = now when a status change implies it and none is set."""
        status = fields.get("status")
        stamp = "started_at" if status == "running" else "finished_at" if status in terminal else None
        if stamp is None or stamp in fields:
            return fields
        current = self._scalar(f"SELECT {stamp} FROM {table} WHERE {key} = ?", [key_value])
        return fields if current is not None else {**fields, stamp: utcnow()}


def insert_arrow(con: duckdb.DuckDBPyConnection, table: str, tbl: pa.Table, on_conflict: Conflict) -> None:
    """Insert an Arrow table into ``table`` inside the caller's transaction.

    Rows repeating a key within ``tbl`` keep the last one. ``on_conflict``:
    ``"error"`` raises on an existing key, ``"ignore"`` keeps the existing row,
    ``"update"`` overwrites the columns present in ``tbl`` (upsert).
    """
    import pyarrow as pa

    if tbl.num_rows == 0:
        return
    columns = tbl.column_names
    unknown = [c for c in columns if c not in COLUMNS[table]]
    if unknown:
        raise ValueError(f"{table} has no columns {unknown}; columns are {list(COLUMNS[table])}")
    key = KEYS[table]
    view = f"_incoming_{uuid.uuid4().hex}"
    con.register(view, tbl.append_column("_ord", pa.array(range(tbl.num_rows), pa.int64())))
    try:
        col_list = ", ".join(columns)
        partition = ", ".join(key) if all(k in columns for k in key) else "_ord"
        sql = (
            f"INSERT INTO {table} ({col_list}) SELECT {col_list} FROM {view} "
            f"QUALIFY row_number() OVER (PARTITION BY {partition} ORDER BY _ord DESC) = 1"
        )
        updates = [c for c in columns if c not in key and c != _SURROGATE.get(table)]
        if on_conflict == "ignore" or (on_conflict == "update" and not updates):
            sql += " ON CONFLICT DO NOTHING"
        elif on_conflict == "update":
            sets = ", ".join(f"{c} = EXCLUDED.{c}" for c in updates)
            sql += f" ON CONFLICT ({', '.join(key)}) DO UPDATE SET {sets}"
        con.execute(sql)
    finally:
        try:
            con.unregister(view)
        except duckdb.TransactionException:
            # The statement failed and aborted the transaction; the view is
            # dropped after the caller's ROLLBACK (see StoreCore._tx).
            _STALE_VIEWS.setdefault(id(con), []).append(view)


_STALE_VIEWS: dict[int, list[str]] = {}


def _drop_stale_views(con: duckdb.DuckDBPyConnection) -> None:
    for view in _STALE_VIEWS.pop(id(con), []):
        try:
            con.unregister(view)
        except duckdb.Error:
            pass
