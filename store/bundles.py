"""Result bundles: how workers hand rows to the store's owner.

A worker never opens the catalog. It writes a bundle,
``inbox/<job_id>/part-<part:06d>/``, holding one Parquet file per catalog table
and a ``manifest.json`` written last, by rename. A bundle without a manifest is
incomplete (its worker is still writing, or crashed) and is left alone. The
owner ingests complete bundles with :meth:`store.Store.ingest_bundles`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from store.errors import BundleError
from store.paths import StoreLayout, as_layout
from store.rows import encode_rows, utcnow
from store.schema import COLUMNS, KEYS

__all__ = ["BUNDLE_TABLES", "write_bundle", "IngestReport", "BundleDir", "list_bundles", "read_bundle"]

# Tables a bundle may carry, in the order they are ingested.
BUNDLE_TABLES = ("zoo", "run", "artifact", "checkpoint", "metric", "probe", "job")
_MANIFEST = "manifest.json"
_PART_RE = re.compile(r"^part-(\d{6})$")
_SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
_RESERVED = {"bundle_id", "job_id", "part", "tables", "created_at"}


@dataclass
class IngestReport:
    """What one :meth:`~store.Store.ingest_bundles` call did.

    Attributes
    ----------
    ingested : list[str]
        Bundle ids written to the catalog (their folders are removed).
    incomplete : list[str]
        Bundles without a manifest yet; left alone.
    failed : dict[str, str]
        Bundle id -> reason; nothing of them was written, folders kept for inspection.
    duplicate : list[str]
        Bundles ingested before and delivered again; skipped and removed.
    refused : dict[str, str]
        Bundle id -> reason: bundles of a job that had already ended (done,
        failed or cancelled), e.g. from a worker that outlived its owner;
        nothing of them was written, folders renamed ``refused-part-*`` and kept.
    stopped : list[str]
        Runs logged from a script (``engine.tracking``) that were left running by a
        script that is gone, marked ``stopped`` after the bundles went in.
    """

    ingested: list[str] = field(default_factory=list)
    incomplete: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    duplicate: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    stopped: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BundleDir:
    """A bundle folder found in the inbox."""

    job_id: str
    part: int
    path: Path

    @property
    def bundle_id(self) -> str:
        return f"{self.job_id}/{self.part:06d}"

    @property
    def complete(self) -> bool:
        return (self.path / _MANIFEST).is_file()


def _check_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not _SAFE_ID.match(job_id):
        raise ValueError(
            f"job_id must be letters, digits and '_.:-' (starting with a letter or digit), "
            f"usable as a folder name; got {job_id!r}"
        )
    return job_id


def _to_arrow(table: str, value: Any):
    import pyarrow as pa

    if isinstance(value, pa.Table):
        return value
    if hasattr(value, "to_dict") and hasattr(value, "columns"):  # pandas DataFrame
        return pa.Table.from_pandas(value, preserve_index=False)
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return pa.Table.from_pylist(encode_rows(table, value))
    raise TypeError(
        f"bundle table {table!r} must be a pyarrow.Table, a pandas DataFrame or a list of row dicts; "
        f"got {type(value).__name__}"
    )


def check_columns(table: str, names: Sequence[str]) -> None:
    """Raise ValueError unless ``names`` are columns of ``table`` and include its key."""
    if table not in BUNDLE_TABLES:
        raise ValueError(f"bundles may carry tables {list(BUNDLE_TABLES)}; got {table!r}")
    unknown = [n for n in names if n not in COLUMNS[table]]
    if unknown:
        raise ValueError(f"bundle table {table!r} has unknown columns {unknown}; "
                         f"{table} columns are {list(COLUMNS[table])}")
    missing = [k for k in KEYS[table] if k not in names]
    if missing:
        raise ValueError(f"bundle table {table!r} lacks its key columns {missing}")


def _fsync_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def write_bundle(
    store_path: str | os.PathLike[str] | StoreLayout,
    job_id: str,
    tables: Mapping[str, Any],
    manifest: Mapping[str, Any] | None = None,
    *,
    part: int = 0,
) -> Path:
    """Write a result bundle for the store's owner to ingest.

    Parameters
    ----------
    store_path : str or path-like
        The store folder (it must exist).
    job_id : str
        The job that produced the rows; the bundle goes to ``inbox/<job_id>/``.
    tables : dict[str, pyarrow.Table | pandas.DataFrame | list[dict]]
        Catalog table name (one of :data:`BUNDLE_TABLES`) -> rows. Columns must
        be columns of that table and include its key; JSON columns are text
        (row dicts may give ``config={...}`` for ``config_json``).
    manifest : dict, optional
        Extra JSON-able fields recorded in ``manifest.json``.
    part : int
        Sequence number of this bundle within the job (0, 1, ...). Parts are
        ingested in order, so a later part may update a run's status.

    Returns
    -------
    Path
        The bundle folder.

    Raises
    ------
    FileExistsError
        If this (job, part) bundle is already complete and not yet ingested.
    """
    import pyarrow.parquet as pq

    layout = as_layout(store_path)
    inbox = layout.require(layout.inbox)
    _check_job_id(job_id)
    if not isinstance(part, int) or not 0 <= part < 1_000_000:
        raise ValueError(f"part must be an integer in [0, 999999]; got {part!r}")
    extra = dict(manifest or {})
    clash = sorted(_RESERVED & extra.keys())
    if clash:
        raise ValueError(f"manifest fields {clash} are set by write_bundle; rename them")
    arrow = {name: _to_arrow(name, value) for name, value in tables.items()}
    for name, tbl in arrow.items():
        check_columns(name, tbl.column_names)
        _check_json_columns(name, tbl)
    folder = inbox / job_id / f"part-{part:06d}"
    if (folder / _MANIFEST).exists():
        raise FileExistsError(
            f"bundle {job_id}/{part:06d} at {folder} is complete and not yet ingested; write the next part instead"
        )
    folder.mkdir(parents=True, exist_ok=True)
    for name, tbl in arrow.items():
        tmp = folder / f".{name}.parquet.tmp"
        pq.write_table(tbl, tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, folder / f"{name}.parquet")
    body = {
        **extra,
        "bundle_id": f"{job_id}/{part:06d}",
        "job_id": job_id,
        "part": part,
        "tables": {name: tbl.num_rows for name, tbl in arrow.items()},
        "created_at": utcnow().isoformat(),
    }
    _fsync_write(folder / _MANIFEST, json.dumps(body, indent=2, default=str).encode())
    return folder


def list_bundles(layout: StoreLayout) -> list[BundleDir]:
    """Every bundle folder in the inbox, in (job_id, part) order."""
    found: list[BundleDir] = []
    if not layout.inbox.is_dir():
        return found
    for job_dir in layout.inbox.iterdir():
        if not job_dir.is_dir() or job_dir.name.startswith("."):
            continue
        for part_dir in job_dir.iterdir():
            match = _PART_RE.match(part_dir.name)
            if match and part_dir.is_dir():
                found.append(BundleDir(job_dir.name, int(match.group(1)), part_dir))
    return sorted(found, key=lambda b: (b.job_id, b.part))


def _read_manifest(bundle: BundleDir) -> dict[str, Any]:
    try:
        manifest = json.loads((bundle.path / _MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"unreadable manifest.json: {exc}") from exc
    if not isinstance(manifest, dict) or not isinstance(manifest.get("tables"), dict):
        raise BundleError("manifest.json must be an object with a 'tables' object (table -> row count)")
    if manifest.get("bundle_id") != bundle.bundle_id:
        raise BundleError(f"manifest bundle_id {manifest.get('bundle_id')!r} "
                          f"does not match its folder {bundle.bundle_id!r}")
    return manifest


def _check_json_columns(name: str, tbl) -> None:
    import pyarrow as pa

    for column in tbl.column_names:
        kind = tbl.schema.field(column).type
        is_text = pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind)
        if column.endswith("_json") and not is_text:
            raise BundleError(f"{name}.{column} must hold JSON text; got Arrow type {kind}")


def read_bundle(bundle: BundleDir) -> tuple[dict[str, Any], dict[str, Any]]:
    """Validate a complete bundle and load its tables.

    Returns
    -------
    manifest : dict
    tables : dict[str, pyarrow.Table]

    Raises
    ------
    BundleError
        With the reason, if anything about the bundle is wrong.
    """
    import pyarrow.parquet as pq

    manifest = _read_manifest(bundle)
    tables = {}
    for name, n_rows in manifest["tables"].items():
        if name not in BUNDLE_TABLES:
            raise BundleError(f"bundles may carry tables {list(BUNDLE_TABLES)}; the manifest lists {name!r}")
        path = bundle.path / f"{name}.parquet"
        try:
            tbl = pq.read_table(path)
        except Exception as exc:  # pyarrow raises ArrowInvalid / OSError for bad files
            raise BundleError(f"cannot read {path.name}: {exc}") from exc
        try:
            check_columns(name, tbl.column_names)
        except ValueError as exc:
            raise BundleError(str(exc)) from None
        if tbl.num_rows != n_rows:
            raise BundleError(f"{path.name} has {tbl.num_rows} rows but the manifest says {n_rows}")
        _check_json_columns(name, tbl)
        tables[name] = tbl
    return manifest, tables
