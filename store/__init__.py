"""Zooscope's store: a DuckDB catalog plus content-addressed artifact files.

One process owns a store (:func:`open_store`); workers write artifacts
(:func:`put_tensors_at`) and result bundles (:func:`write_bundle`) that the
owner ingests; CLI commands drop requests (:func:`drop_request`) while another
process owns it. This package never imports ``engine``.
"""

from store.artifacts import artifact_path, artifact_row, get_tensors_at, put_tensors_at
from store.bundles import BUNDLE_TABLES, IngestReport, write_bundle
from store.catalog_jobs import probe_key
from store.errors import (
    BundleError,
    CorruptArtifactError,
    NotFoundError,
    StoreBusyError,
    StoreError,
    StoreFilesChangedError,
    StoreVersionError,
)
from store.logged_runs import (
    logged_run_inbox,
    logged_run_job_id,
    record_logged_writer,
    release_logged_writer,
    touch_logged_writer,
)
from store.paths import DEFAULT_STORE, STORE_ENV_VAR, resolve_store_path
from store.requests import MAX_REQUEST_BYTES, drop_request
from store.schema import JOB_STATUSES, RUN_STATUSES, SCHEMA_VERSION
from store.store import Store, open_store

__all__ = [
    "Store",
    "open_store",
    "resolve_store_path",
    "STORE_ENV_VAR",
    "DEFAULT_STORE",
    "SCHEMA_VERSION",
    "RUN_STATUSES",
    "JOB_STATUSES",
    "put_tensors_at",
    "get_tensors_at",
    "artifact_path",
    "artifact_row",
    "write_bundle",
    "BUNDLE_TABLES",
    "IngestReport",
    "drop_request",
    "MAX_REQUEST_BYTES",
    "probe_key",
    "StoreError",
    "StoreBusyError",
    "StoreVersionError",
    "CorruptArtifactError",
    "NotFoundError",
    "BundleError",
    "StoreFilesChangedError",
    "logged_run_inbox",
    "logged_run_job_id",
    "record_logged_writer",
    "release_logged_writer",
    "touch_logged_writer",
]
