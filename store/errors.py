"""Exceptions raised by the store.

Every message names the offending value (a path, a pid, a sha, a version) and
says what to do about it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = [
    "StoreError",
    "StoreBusyError",
    "StoreVersionError",
    "CorruptArtifactError",
    "NotFoundError",
    "BundleError",
    "StoreFilesChangedError",
]


class StoreError(Exception):
    """Base class of every error raised by :mod:`store`."""


class StoreBusyError(StoreError):
    """The store is owned by another live process.

    Attributes
    ----------
    path : Path
        The store folder.
    holder : dict or None
        The contents of ``owner.json`` (pid, host, command, started_at) when
        it could be read.
    """

    def __init__(self, message: str, *, path: Path, holder: dict[str, Any] | None = None):
        super().__init__(message)
        self.path = path
        self.holder = holder


class StoreVersionError(StoreError):
    """The catalog's schema version does not match what this code can open."""


class CorruptArtifactError(StoreError):
    """An artifact file is missing, unparseable, or does not hash to its name.

    Attributes
    ----------
    sha : str
        The artifact's content hash (its name).
    path : Path
        Where the file was expected.
    """

    def __init__(self, message: str, *, sha: str, path: Path):
        super().__init__(message)
        self.sha = sha
        self.path = path


class NotFoundError(StoreError, LookupError):
    """A row asked for by id does not exist in the catalog."""


class BundleError(StoreError):
    """A result bundle is malformed (bad manifest, unreadable Parquet, wrong columns)."""


class StoreFilesChangedError(StoreError):
    """A catalog file was deleted or replaced under the process that owns it.

    Raised by :meth:`store.Store.check_files` (and by every write after it),
    so the owner stops instead of writing into a file nobody will read again.
    """
