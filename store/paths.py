"""Where a store lives and how its folder is laid out.

::

    <store>/
        store.duckdb      the catalog (opened by the owner only)
        owner.lock        flock target: exclusive for the owner, shared for readers
        owner.json        who owns the store (pid, host, command, start time)
        artifacts/ab/<sha>.safetensors
        inbox/<job_id>/part-000000/   result bundles written by workers
        requests/<time>-<uuid>.json   requests dropped by CLI commands
        datasets/<name>.json          registered data sets, mirrored from the catalog for workers
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from store.errors import StoreError

__all__ = ["STORE_ENV_VAR", "DEFAULT_STORE", "resolve_store_path", "StoreLayout"]

STORE_ENV_VAR = "ZOOSCOPE_STORE"
DEFAULT_STORE = "zoo-store"


def resolve_store_path(cli_value: str | os.PathLike[str] | None = None) -> Path:
    """Pick the store folder: ``--store``, else ``$ZOOSCOPE_STORE``, else ``./zoo-store``.

    Parameters
    ----------
    cli_value : str or path-like, optional
        The value of the ``--store`` command-line option, if given. Empty
        strings count as not given.

    Returns
    -------
    Path
        An absolute path (the folder need not exist yet).
    """
    value = cli_value if cli_value not in (None, "") else os.environ.get(STORE_ENV_VAR) or DEFAULT_STORE
    return Path(value).expanduser().absolute()


@dataclass(frozen=True)
class StoreLayout:
    """The paths inside one store folder.

    Parameters
    ----------
    root : Path
        The store folder.
    """

    root: Path

    @property
    def db(self) -> Path:
        return self.root / "store.duckdb"

    @property
    def lock(self) -> Path:
        return self.root / "owner.lock"

    @property
    def owner_json(self) -> Path:
        return self.root / "owner.json"

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def requests(self) -> Path:
        return self.root / "requests"

    @property
    def datasets(self) -> Path:
        """Mirror of the ``dataset`` table, one ``<name>.json`` per registered data set (for workers)."""
        return self.root / "datasets"

    def create(self) -> None:
        """Create the folder and its sub-folders (idempotent)."""
        if self.root.exists() and not self.root.is_dir():
            raise StoreError(f"store path {self.root} exists and is not a folder; pass a folder path with --store")
        for folder in (self.root, self.artifacts, self.inbox, self.requests):
            folder.mkdir(parents=True, exist_ok=True)

    def require(self, folder: Path) -> Path:
        """Return ``folder`` if it exists, else raise a :class:`StoreError` naming the store."""
        if not folder.is_dir():
            raise StoreError(
                f"no store at {self.root} (missing {folder.name}/); create it first with "
                f"store.open_store({str(self.root)!r}) or any `zooscope --store {self.root}` command"
            )
        return folder


def as_layout(store_path: str | os.PathLike[str] | StoreLayout) -> StoreLayout:
    """Accept a path or a layout; used by the functions workers call."""
    if isinstance(store_path, StoreLayout):
        return store_path
    return StoreLayout(Path(store_path).expanduser().absolute())
