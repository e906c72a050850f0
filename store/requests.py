"""Requests dropped by CLI commands while another process owns the store.

A command that cannot own the store writes its request as
``requests/<time_ns>-<uuid>.json`` (temporary name, then rename); the owner
takes them in order of creation and queues them.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

from store.paths import StoreLayout, as_layout
from store.rows import to_json, utcnow

__all__ = ["MAX_REQUEST_BYTES", "drop_request", "take_requests_at"]

# A request file (1 MiB): a request is a kind and a few JSON arguments (a few hundred bytes). Other processes
# write this folder, so the owner reads no more than this of any file in it (engine.bounds keeps the limits
# of what users send; the store never imports the engine, so this one lives here).
MAX_REQUEST_BYTES = 1 << 20


def drop_request(store_path: str | os.PathLike[str] | StoreLayout, kind: str, payload: dict[str, Any]) -> Path:
    """Leave a request for the store's owner.

    Parameters
    ----------
    store_path : str or path-like
        The store folder (it must exist).
    kind : str
        What is asked for, e.g. ``"train"``; interpreted by the owner.
    payload : dict
        JSON-able arguments of the request.

    Returns
    -------
    Path
        The request file.
    """
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"request kind must be a non-empty string; got {kind!r}")
    if not isinstance(payload, dict):
        raise TypeError(f"request payload must be a dict; got {type(payload).__name__}")
    layout = as_layout(store_path)
    folder = layout.require(layout.requests)
    request_id = f"{time.time_ns():020d}-{uuid.uuid4().hex}"
    body = {
        "request_id": request_id,
        "kind": kind,
        "payload": payload,
        "created_at": utcnow().isoformat(),
        "pid": os.getpid(),
        "host": socket.gethostname(),
    }
    text = to_json(body)
    if len(text.encode()) > MAX_REQUEST_BYTES:
        raise ValueError(f"request {kind!r} is {len(text.encode()):,} bytes of JSON; the owner reads at most "
                         f"{MAX_REQUEST_BYTES:,} (store.requests.MAX_REQUEST_BYTES): pass a file path, "
                         "not its contents")
    path = folder / f"{request_id}.json"
    tmp = folder / f".{request_id}.tmp"
    with open(tmp, "w") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return path


def take_requests_at(layout: StoreLayout) -> list[dict[str, Any]]:
    """Read and delete every request, oldest first.

    A file that is not valid JSON, is larger than :data:`MAX_REQUEST_BYTES`, is not a
    regular file (a symbolic link, a FIFO, a folder), nests too deep to parse, or is not the
    object :func:`drop_request` writes (a string ``kind``, an object ``payload``) is renamed to
    ``*.bad`` with a warning, so it is neither lost nor read again; a link is never followed.
    Every request returned is a dict, whatever other processes wrote in the folder. A request
    that cannot be deleted is left, with a warning, not taken; the others are taken all the same.
    """
    taken = []
    for path in sorted(layout.requests.glob("[0-9]*.json")):
        try:
            request = _parse_request(_read_request(path))
        except (OSError, ValueError) as exc:
            _set_aside(path, f"request file {path} is unreadable ({exc})")
            continue
        try:
            path.unlink(missing_ok=True)
        except OSError as exc:  # left in place it would be read again: run once, or not at all until removed
            warnings.warn(f"request file {path} could not be removed ({exc}), so it is not taken (it would run "
                          "again at every look): remove it by hand or make the requests folder writable",
                          stacklevel=2)
            continue
        taken.append(request)
    return taken


def _parse_request(data: bytes) -> dict[str, Any]:
    """The request object in ``data``; ValueError for anything :func:`drop_request` would not have written."""
    try:
        request = json.loads(data)
    except RecursionError:  # "[[[[..." a megabyte deep: not a ValueError, and it would stop the owner's loop
        raise ValueError("JSON nested too deep to parse; a request is a flat object") from None
    if not isinstance(request, dict):
        raise ValueError(f"not a JSON object but {type(request).__name__} {_short(request)}; a request is "
                         '{"kind": ..., "payload": {...}} as store.drop_request writes it')
    if not isinstance(request.get("kind"), str) or not isinstance(request.get("payload"), dict):
        raise ValueError(f"kind {_short(request.get('kind'))} and payload {_short(request.get('payload'))} "
                         "are not a string and an object; a request is {\"kind\": ..., \"payload\": {...}} "
                         "as store.drop_request writes it")
    return request


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


def _read_request(path: Path) -> bytes:
    """The bytes of one request file: a regular file, not followed through a link, at most MAX_REQUEST_BYTES."""
    # O_NOFOLLOW: a link is refused (ELOOP), not read; O_NONBLOCK: opening a FIFO does not wait for a writer.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ValueError(f"not a regular file (mode {stat.filemode(mode)}); requests are plain JSON files")
        chunks, size = [], 0
        while size <= MAX_REQUEST_BYTES:
            chunk = os.read(fd, MAX_REQUEST_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    data = b"".join(chunks)
    if len(data) > MAX_REQUEST_BYTES:
        raise ValueError(f"larger than {MAX_REQUEST_BYTES:,} bytes (store.requests.MAX_REQUEST_BYTES); "
                         "a request is a few hundred bytes of JSON")
    return data


def _set_aside(path: Path, why: str) -> None:
    bad = path.with_name(path.name + ".bad")
    try:
        os.replace(path, bad)  # a link is renamed, never its target
    except OSError as exc:
        warnings.warn(f"{why}; it could not be renamed to {bad.name} ({exc}): remove it by hand", stacklevel=3)
        return
    warnings.warn(f"{why}; renamed to {bad.name}", stacklevel=3)
