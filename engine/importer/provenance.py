"""What built an imported run: the architecture (a built-in or a factory) and the files it came from.

Recorded as ``run.built_by_json``: the same record as a run trained here
(:func:`engine.nets.provenance`), plus the folder it came from and the hash of every file.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from engine import nets
from engine.bounds import MAX_OPTION_TEXT, printable
from engine.config import ArchSpec

__all__ = ["arch_label", "file_sha256", "import_provenance"]

_CHUNK = 1 << 20


def file_sha256(path: str | Path) -> str:
    """The sha256 hex digest of a file's bytes, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def arch_label(spec: ArchSpec) -> str:
    """How an architecture is named in messages: ``mlp(width=16, depth=2)`` or ``pkg.mod:fn(**kwargs)``."""
    if spec.factory:
        return f"{spec.factory}(**{printable(json.dumps(spec.kwargs, sort_keys=True), limit=120)})"
    return f"{spec.name}(width={spec.width}, depth={spec.depth})"


def import_provenance(arch: ArchSpec, source: str | Path, files_sha256: dict[str, str]) -> dict[str, Any]:
    """``built_by`` of an imported run: :func:`engine.nets.provenance` of ``arch`` plus where it came from.

    Parameters
    ----------
    arch : ArchSpec
        What builds the model: a built-in, or a factory (its import path, kwargs and the
        SHA-256 of its source file, as for a run trained here).
    source : str or Path
        The folder or file imported (recorded as an absolute path, printable, cut to
        :data:`~engine.bounds.MAX_OPTION_TEXT` characters): ``imported_from``.
    files_sha256 : dict
        The sha256 of every imported file's bytes, by its path relative to ``source``
        (``files_sha256``), so the run can be traced back to, and checked against, the files.
    """
    shown = printable(str(Path(source).resolve()), limit=MAX_OPTION_TEXT)
    return {**nets.provenance(arch), "imported_from": shown, "files_sha256": dict(sorted(files_sha256.items()))}
