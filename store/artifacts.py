"""Content-addressed tensor files: ``artifacts/ab/<sha256>.safetensors``.

A file is written to a temporary name, fsynced and renamed into place, so a
crash never leaves a half-written file under a real name. Its name is the
sha256 of its bytes, which is checked when the file is first read by a process
(and again whenever the file changes on disk). Tensors are stored
with safetensors, never pickled.

These functions need only the store folder, not the catalog, so workers that
do not own the store call them directly and report the artifact rows
(:func:`artifact_row`) in their result bundle.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from store.errors import CorruptArtifactError
from store.paths import StoreLayout, as_layout
from store.rows import utcnow

if TYPE_CHECKING:
    import torch

__all__ = ["put_tensors_at", "get_tensors_at", "artifact_path", "artifact_row", "clear_caches", "serialise_tensors"]

_SHA_RE = re.compile(r"^[0-9a-f]{64}$")

# Files this process has hashed and found right, with the stat stamp they had then. A file
# whose stamp is unchanged is the file that was verified: any write, truncation, rename over
# it or permission change moves its ctime (which no user call can set back) or its inode.
# A file changed within the filesystem's timestamp granularity of its last change keeps its ctime,
# so (as git does with racily clean files) one whose ctime is this recent is not trusted yet.
_VERIFIED: dict[str, tuple[int, int, int, int]] = {}
_VERIFIED_MAX = 100_000
_VERIFIED_LOCK = threading.Lock()
_RACY_NS = 2_000_000_000


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


def _is_verified(path: Path, stamp: tuple[int, int, int, int]) -> bool:
    with _VERIFIED_LOCK:
        return _VERIFIED.get(str(path)) == stamp


def _mark_verified(path: Path, stamp: tuple[int, int, int, int]) -> None:
    if stamp[2] > time.time_ns() - _RACY_NS:  # changed just now: a change in the same tick would not show
        return
    with _VERIFIED_LOCK:
        if len(_VERIFIED) >= _VERIFIED_MAX:
            _VERIFIED.clear()
        _VERIFIED[str(path)] = stamp


def clear_caches() -> None:
    """Forget which artifacts this process has verified: the next read of each hashes it again."""
    with _VERIFIED_LOCK:
        _VERIFIED.clear()


def _check_sha(sha: str) -> str:
    if not isinstance(sha, str) or not _SHA_RE.match(sha):
        raise ValueError(f"artifact sha must be 64 lowercase hex characters; got {sha!r}")
    return sha


def artifact_path(store_path: str | os.PathLike[str] | StoreLayout, sha: str) -> Path:
    """Where the artifact ``sha`` lives: ``<store>/artifacts/<sha[:2]>/<sha>.safetensors``."""
    _check_sha(sha)
    return as_layout(store_path).artifacts / sha[:2] / f"{sha}.safetensors"


def _cpu_tensors(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    import torch

    if not isinstance(tensors, Mapping) or not tensors:
        raise ValueError(f"put_tensors expects a non-empty dict name -> tensor; got {tensors!r:.80}")
    out: dict[str, torch.Tensor] = {}
    seen_storage: set[int] = set()
    for name, tensor in tensors.items():
        if not isinstance(name, str) or not isinstance(tensor, torch.Tensor):
            raise TypeError(
                f"put_tensors expects str -> torch.Tensor; got {type(name).__name__} -> "
                f"{type(tensor).__name__} for key {name!r}"
            )
        t = tensor.detach().to("cpu").contiguous()
        storage = t.untyped_storage()
        # safetensors refuses tensors that share memory (tied weights, slices of
        # a stacked population); copy those so each tensor owns its bytes.
        if storage.data_ptr() in seen_storage or storage.nbytes() != t.nbytes:
            t = t.clone()
        seen_storage.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def serialise_tensors(tensors: Mapping[str, torch.Tensor]) -> bytes:
    """The safetensors bytes for ``tensors`` (deterministic for equal tensors)."""
    from safetensors.torch import save

    return save(_cpu_tensors(tensors))


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{id(data)}.tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def put_tensors_at(store_path: str | os.PathLike[str] | StoreLayout, tensors: Mapping[str, torch.Tensor]) -> str:
    """Write ``tensors`` as a content-addressed safetensors file.

    Parameters
    ----------
    store_path : str or path-like
        The store folder (it must exist; the catalog is not touched).
    tensors : dict[str, torch.Tensor]
        Any device or layout; written as contiguous CPU tensors.

    Returns
    -------
    str
        The sha256 hex digest of the file's bytes, which is its name.
        Writing equal tensors again returns the same sha and does not rewrite
        the file, once its bytes are checked to hash to that sha; a damaged
        file is replaced (atomically, with a warning) instead.
    """
    layout = as_layout(store_path)
    layout.require(layout.artifacts)
    data = serialise_tensors(tensors)
    sha = hashlib.sha256(data).hexdigest()
    path = artifact_path(layout, sha)
    state = _file_state(path, sha, len(data))
    if state != "intact":
        if state == "damaged":
            warnings.warn(f"artifact {sha} at {path} was damaged on disk (its bytes do not hash to its name); "
                          "rewrote it from the tensors being stored", stacklevel=2)
        _write_atomic(path, data)
    return sha


def _file_state(path: Path, sha: str, size: int) -> str:
    """``"absent"``, ``"intact"`` (``size`` bytes hashing to ``sha``) or ``"damaged"``."""
    try:
        with open(path, "rb") as fh:
            if os.fstat(fh.fileno()).st_size != size:
                return "damaged"
            digest = hashlib.sha256()
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except FileNotFoundError:
        return "absent"
    return "intact" if digest.hexdigest() == sha else "damaged"


def get_tensors_at(store_path: str | os.PathLike[str] | StoreLayout, sha: str) -> dict[str, torch.Tensor]:
    """Read the artifact ``sha`` back as CPU tensors, verifying its hash.

    The hash is computed on the first read in this process and again whenever the file's
    size, times or inode have changed since; an unchanged, verified file is not hashed again.

    Raises
    ------
    CorruptArtifactError
        If the file is missing, does not hash to ``sha``, or is not valid
        safetensors. The message names the sha and the path.
    """
    path = artifact_path(store_path, sha)
    try:
        with open(path, "rb") as fh:
            data = fh.read()
            stamp = _stamp(os.fstat(fh.fileno()))  # after the read: a write during it moves the stamp
    except FileNotFoundError:
        raise CorruptArtifactError(
            f"artifact {sha} is missing: no file at {path}; it was deleted or never written "
            "(was the store copied without its artifacts/ folder?)",
            sha=sha, path=path,
        ) from None
    if _is_verified(path, stamp):
        return _load(data, sha, path)
    actual = hashlib.sha256(data).hexdigest()
    if actual != sha:
        raise CorruptArtifactError(
            f"artifact {sha} is corrupt: {path} hashes to {actual}; the file was modified or "
            "damaged on disk. Delete it and recompute the result that produced it",
            sha=sha, path=path,
        )
    tensors = _load(data, sha, path)
    _mark_verified(path, stamp)
    return tensors


def _load(data: bytes, sha: str, path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load

    try:
        return load(data)
    except Exception as exc:  # safetensors raises its own SafetensorError
        raise CorruptArtifactError(
            f"artifact {sha} at {path} is not a valid safetensors file ({exc})", sha=sha, path=path
        ) from exc


def artifact_row(store_path: str | os.PathLike[str] | StoreLayout, sha: str, kind: str = "weights") -> dict[str, Any]:
    """The ``artifact`` catalog row for an existing file, for a worker's bundle."""
    path = artifact_path(store_path, sha)
    if not path.exists():
        raise CorruptArtifactError(f"artifact {sha} is missing: no file at {path}", sha=sha, path=path)
    return {"sha": sha, "size_bytes": path.stat().st_size, "kind": kind, "created_at": utcnow()}
