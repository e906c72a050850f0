"""Data sets registered by name: the ``dataset`` table and its mirror folder for workers.

The table is the record; ``<store>/datasets/<name>.json`` mirrors each row (``name``,
``spec``, ``info``, ``owner``, ``created_at``), written by the owner to a temporary name and
renamed, because workers and Ray tasks never open the catalog but can read files of the store.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from store.core import StoreCore
from store.errors import NotFoundError
from store.rows import utcnow

__all__ = ["DatasetsCatalog", "write_dataset_mirror"]


class DatasetsCatalog(StoreCore):
    """Methods for the ``dataset`` table."""

    def put_dataset(self, name: str, spec: Mapping[str, Any], info: Mapping[str, Any], *,
                    owner: str | None = None, replace: bool = False) -> None:
        """Record data set ``name`` (refused if it exists, unless ``replace``) and refresh the mirror."""
        if not replace:
            self.require_free_dataset_name(name)
        self._insert("dataset", [{"name": name, "spec": dict(spec), "info": dict(info), "owner": owner,
                                  "created_at": utcnow()}], on_conflict="update" if replace else "error")
        self.sync_dataset_mirror()

    def require_free_dataset_name(self, name: str) -> None:
        """Raise ``ValueError`` if a data set is registered as ``name``."""
        if self._scalar("SELECT count(*) FROM dataset WHERE name = ?", [name]):
            raise ValueError(f"a data set named {name!r} is already registered in {self.path}; pick another name, "
                             "or pass --replace to register the new files under it")

    def get_dataset(self, name: str) -> dict[str, Any]:
        """One registered data set (``spec`` and ``info`` parsed)."""
        return self._get("dataset", "name", name, what="registered data set")

    def list_datasets(self) -> pd.DataFrame:
        """Registered data sets, by name, with ``spec_json`` / ``info_json`` as stored."""
        return self._df("SELECT name, spec_json, info_json, owner, created_at FROM dataset ORDER BY name")

    def remove_dataset(self, name: str) -> None:
        """Forget a registration (runs trained on it keep their rows, but cannot load it again)."""
        if not self._scalar("SELECT count(*) FROM dataset WHERE name = ?", [name]):
            raise NotFoundError(f"no registered data set {name!r} in store {self.path}")
        with self._tx() as con:
            con.execute("DELETE FROM dataset WHERE name = ?", [name])
        self.sync_dataset_mirror()

    def sync_dataset_mirror(self) -> Path:
        """Rewrite ``<store>/datasets/`` from the table (one JSON file per row); returns the folder."""
        folder = self.layout.datasets
        if self.is_owner:
            write_dataset_mirror(folder, [self.get_dataset(n) for n in self.list_datasets()["name"]])
        return folder


def write_dataset_mirror(folder: Path, rows: list[Mapping[str, Any]]) -> None:
    """Make ``folder`` hold exactly one ``<name>.json`` per row, each written atomically."""
    folder.mkdir(parents=True, exist_ok=True)
    keep = set()
    for row in rows:
        f = folder / f"{row['name']}.json"
        keep.add(f.name)
        text = json.dumps({k: row.get(k) for k in ("name", "spec", "info", "owner", "created_at")}, default=str,
                          sort_keys=True, indent=1)
        if f.is_file() and f.read_text() == text:
            continue
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{row['name']}.", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, f)
    for f in folder.glob("*.json"):
        if f.name not in keep:
            f.unlink()
