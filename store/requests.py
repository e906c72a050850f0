"""Requests dropped by CLI commands while another process owns the store.

A command that cannot own the store writes its request as
``requests/<time_ns>-<uuid>.json`` (temporary name, then rename); the owner
takes them in order of creation and queues them.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

from store.paths import StoreLayout, as_layout
from store.rows import to_json, utcnow

__all__ = ["drop_request", "take_requests_at"]


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

    A file that is not valid JSON is renamed to ``*.bad`` with a warning, so it
    is neither lost nor read again.
    """
    taken = []
    for path in sorted(layout.requests.glob("[0-9]*.json")):
        try:
            request = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            warnings.warn(f"request file {path} is unreadable ({exc}); renamed to {path.name}.bad", stacklevel=2)
            os.replace(path, path.with_name(path.name + ".bad"))
            continue
        path.unlink(missing_ok=True)
        taken.append(request)
    return taken
