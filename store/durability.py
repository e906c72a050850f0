"""Keeping what the owner committed on disk: checkpoints, and catalog files that vanish.

DuckDB commits a transaction by appending it to ``store.duckdb.wal`` and moves it
into ``store.duckdb`` only at a checkpoint (by default when the WAL passes 16 MB, or
at a clean close). Until then the WAL is the only copy on disk. If it is deleted
while the owner runs, DuckDB keeps writing into the deleted file, and a crash loses
every transaction since the last checkpoint. So the owner checkpoints after the
work it reports (see :meth:`store.Store.checkpoint`) and checks, before writing
more, that the files it writes are still the ones in the folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import duckdb

__all__ = ["FileIdentity", "file_identity", "wal_path", "wal_vanished"]

FileIdentity = tuple[int, int]  # (st_dev, st_ino)


def file_identity(path: Path) -> FileIdentity | None:
    """The (device, inode) of ``path``, or None if there is no file there."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino)


def wal_path(db: Path) -> Path:
    return db.with_name(db.name + ".wal")


def wal_vanished(con: duckdb.DuckDBPyConnection, db: Path) -> bool:
    """Whether DuckDB holds un-checkpointed WAL data for ``db`` that no file in the folder holds.

    DuckDB reports the size of the WAL it writes to (its open handle); a non-empty
    WAL with no file at its path was deleted (or moved away) under the owner.
    """
    (wal_size,) = con.execute("SELECT wal_size FROM pragma_database_size() WHERE database_name = current_database()"
                              ).fetchone()
    if str(wal_size).strip() in ("0 bytes", "0"):
        return False
    return not wal_path(db).is_file()
