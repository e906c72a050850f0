"""A worker process: ``python -m engine.jobs.worker STORE JOB_ID``.

Reads ``inbox/<job>/spec.json``, runs the job, and leaves ``result.json`` (success)
or ``error.json`` (failure) in the job folder; rows travel in result bundles. It
never opens the catalog.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from pathlib import Path

from engine.data import use_registered_folder
from engine.nets.plugins import PLUGIN_PACKAGES_ENV, PLUGIN_PATHS_ENV, plugin_config
from store.paths import StoreLayout

from .context import JobCancelled, JobContext, job_dir, write_json_atomic
from .kinds import get_kind

EXIT_CANCELLED = 3


def _plugins(store_path: Path) -> None:
    """The owner's ``[plugins]``: from the environment it hands down, else from the store's settings file."""
    if PLUGIN_PATHS_ENV in os.environ or PLUGIN_PACKAGES_ENV in os.environ:
        plugin_config()
    else:  # started by hand (python -m engine.jobs.worker) rather than by an executor
        from engine.settings import apply_plugins, load_settings

        apply_plugins(load_settings(store_path))


def run_job(store_path: Path, job_id: str) -> int:
    d = job_dir(store_path, job_id)
    request = json.loads((d / "spec.json").read_text())
    use_registered_folder(StoreLayout(Path(store_path).absolute()).datasets)  # the owner's mirror of its data sets
    ctx = JobContext(store_path, job_id, owner=request.get("owner", "local"))
    try:
        _plugins(store_path)  # user model code: the same folders and packages as the owner's
        result = get_kind(request["kind"]).run(request["spec"], ctx) or {}
    except JobCancelled as exc:
        write_json_atomic(d / "error.json", {"status": "cancelled", "error": str(exc)})
        return EXIT_CANCELLED
    except Exception as exc:  # the worker's boundary: everything is reported to the owner
        write_json_atomic(d / "error.json", {
            "status": "failed", "error": f"{type(exc).__name__}: {exc}", "traceback": traceback.format_exc()})
        return 1
    write_json_atomic(d / "result.json", {"status": "done", "result": result})
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m engine.jobs.worker STORE_PATH JOB_ID", file=sys.stderr)
        return 2
    return run_job(Path(args[0]), args[1])


if __name__ == "__main__":
    sys.exit(main())
