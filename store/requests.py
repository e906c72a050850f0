"""Requests dropped by CLI commands while another process owns the store.

A command that cannot own the store writes its request as
``requests/<time_ns>-<uuid>.json`` (temporary name, then rename); the owner
takes them in order of creation and queues them.

The owner claims a request before it reads it, so a file replaced or added under the same
name meanwhile is never deleted unread, and a request is applied once or set aside::

    <id>.json               dropped, waiting
    <id>.json.claimed       renamed by the owner, then read (a crash here: read and applied at the next look)
    <id>.json.applying      being applied (a crash here: renamed to .interrupted at the next look, not rerun)
    (removed)               applied
    <id>.json.bad           malformed, set aside unread; <id>.json.interrupted: its fate unknown, set aside

Only the owner renames into the ``.claimed`` and ``.applying`` names. A file is renamed or
removed by name only while it is still the file that was read (same device and inode).

Whatever else lies at those names (a folder, a link, a file the owner cannot move) blocks no
request: it is set aside under a free name (``<id>.json.bad``, or ``<id>.json.bad.<time>-<hex>``
where that is taken; nothing set aside is replaced), never followed or deleted; where it cannot be
renamed at all it is left, with a warning at every look, and a request of that id goes under a
name of its own, ``<id>~<hex>.json.claimed`` (then ``.applying``).
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

__all__ = ["MAX_REQUEST_BYTES", "RequestClaim", "claim_requests_at", "drop_request", "take_requests_at"]

# A request file (1 MiB): a request is a kind and a few JSON arguments (a few hundred bytes). Other processes
# write this folder, so the owner reads no more than this of any file in it (engine.bounds keeps the limits
# of what users send; the store never imports the engine, so this one lives here).
MAX_REQUEST_BYTES = 1 << 20
CLAIMED, APPLYING, INTERRUPTED, BAD = ".claimed", ".applying", ".interrupted", ".bad"


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

    For a caller that only looks (tests, scripts): a request deleted here and not applied
    afterwards is gone. The owner's loop applies through :func:`claim_requests_at` instead.
    What is set aside, and why, is as there.
    """
    taken = []
    for claim in claim_requests_at(layout):
        if claim.begin():
            claim.done()
            taken.append(claim.request)
    return taken


def claim_requests_at(layout: StoreLayout) -> list[RequestClaim]:
    """Claim and read every request, oldest first; apply each between its ``begin()`` and ``done()``.

    A file that is not valid JSON, is larger than :data:`MAX_REQUEST_BYTES`, is not a
    regular file (a symbolic link, a FIFO, a folder), nests too deep to parse, or is not the
    object :func:`drop_request` writes (a string ``kind``, an object ``payload``) is renamed to
    ``*.bad`` with a warning, so it is neither lost nor read again; a link is never followed.
    Every request returned is a dict, whatever other processes wrote in the folder.

    Claimed files a previous owner left (it stopped between claiming and applying) are taken
    again; files it left being applied are renamed to ``*.interrupted`` with a warning, never
    run twice. A request that cannot be claimed (renamed) is left, with a warning, not taken;
    the others are taken all the same. Nothing at a claim name blocks a request of that id
    (module docstring): it is set aside under a free name first, or, where it cannot be
    renamed at all, left and worked around.
    """
    folder = layout.requests
    for path in sorted(folder.glob("[0-9]*.json" + APPLYING)):
        _set_aside(path, INTERRUPTED, f"request file {_dropped(path)} was being applied when the store's owner "
                   "stopped, so whether it took effect is unknown and it is not run again: check what it asked "
                   "for, then rename it to its .json name to run it again, or delete it")
    # a previous owner's claims, not yet applied, first: what is not a request among them is set aside, so it
    # frees its name for a request of that id in this same look
    claims = [c for c in map(_read_claim, sorted(folder.glob("[0-9]*.json" + CLAIMED))) if c is not None]
    taken = {c.name for c in claims}
    for path in sorted(folder.glob("[0-9]*.json")):
        claimed = path.with_name(path.name + CLAIMED)
        if claimed.name in taken:
            continue  # a second file of that name: taken at the next look
        if _occupied(claimed) or _occupied(path.with_name(path.name + APPLYING)):
            claimed = _own_name(path, CLAIMED)  # what could not be set aside stays there; warned above
        claim = None if not _claim(path, claimed) else _read_claim(claimed)
        if claim is not None:
            claims.append(claim)
    return sorted(claims, key=lambda c: c.name)


class RequestClaim:
    """One request the owner has claimed and read: ``request``, then ``begin()``, apply, ``done()``."""

    def __init__(self, request: dict[str, Any], path: Path, identity: tuple[int, int]):
        self.request = request
        self._path = path  # where the file read lies: <id>.json.claimed, then <id>.json.applying
        self._identity = identity  # (st_dev, st_ino) of that file
        self._marked = False

    @property
    def name(self) -> str:
        """The name of the file read (its order among the requests)."""
        return self._path.name

    def begin(self) -> bool:
        """Mark the request as being applied; False (with a warning) if it cannot be, and must not be applied.

        A file put in the claimed name after it was read is left there, unread, for the next look;
        what was read is applied all the same (True), without a mark: a crash then loses no file.
        """
        if not _is_file(self._path, self._identity):
            warnings.warn(f"request file {self._path} was replaced or removed after it was read; what was read is "
                          "applied, and a file now there is read at the next look", stacklevel=2)
            return True
        applying = self._path.with_name(_dropped(self._path).name + APPLYING)
        if _occupied(applying):  # what lies there could not be set aside: this request goes under a name of its own
            applying = _own_name(_dropped(self._path), APPLYING)
        try:
            os.replace(self._path, applying)
        except OSError as exc:  # applied without the mark, a crash would run it again at the next look
            warnings.warn(f"request file {self._path} could not be renamed to {applying.name} ({exc}), so it is "
                          "not applied now (it would run again after a crash): make the requests folder writable; "
                          "it is tried again at the next look", stacklevel=2)
            return False
        self._path, self._marked = applying, True
        return True

    def done(self) -> None:
        """Remove the applied request's file (only if it is still the file that was read)."""
        if not self._marked:
            return
        self._marked = False
        if not _is_file(self._path, self._identity):
            warnings.warn(f"request file {self._path} was replaced while it was applied; what was read was applied "
                          "and the file now there is set aside at the next look", stacklevel=2)
            return
        try:
            os.unlink(self._path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            warnings.warn(f"request file {self._path} was applied but could not be removed ({exc}); it is set aside "
                          "as .interrupted at the next look, not run again: remove it by hand", stacklevel=2)


def _dropped(path: Path) -> Path:
    """The name ``drop_request`` gave a request file: ``<id>.json``."""
    for suffix in (CLAIMED, APPLYING):
        if path.name.endswith(suffix):
            return path.with_name(path.name.removesuffix(suffix))
    return path


def _claim(path: Path, claimed: Path) -> bool:
    """Rename ``<id>.json`` to ``claimed`` (the link itself, if it is one); False if it is gone or stays."""
    try:
        os.rename(path, claimed)
    except FileNotFoundError:  # removed by whoever wrote it
        return False
    except OSError as exc:  # left in place it is tried again at every look: run once, or not at all until claimed
        warnings.warn(f"request file {path} could not be claimed (renamed to {claimed.name}: {exc}), so it is not "
                      "taken: make the requests folder writable", stacklevel=3)
        return False
    return True


def _occupied(path: Path) -> bool:
    """Whether something (a link included, not followed) lies at ``path``."""
    return os.path.lexists(path)


def _own_name(dropped: Path, suffix: str) -> Path:
    """``<id>~<hex>.json<suffix>`` beside ``<id>.json``: a claim name no other file has, for a request whose own
    claim names are blocked (it sorts right after them)."""
    return dropped.with_name(f"{dropped.name.removesuffix('.json')}~{uuid.uuid4().hex[:8]}.json{suffix}")


def _read_claim(path: Path) -> RequestClaim | None:
    try:
        data, identity = _read_request(path)
        return RequestClaim(_parse_request(data), path, identity)
    except FileNotFoundError:  # removed since it was claimed: not ours to miss
        return None
    except (OSError, ValueError) as exc:
        _set_aside(path, BAD, f"request file {_dropped(path)} is unreadable ({exc})")
        return None


def _is_file(path: Path, identity: tuple[int, int]) -> bool:
    """Whether ``path`` (not followed through a link) is the file of ``identity``."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == identity


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


def _read_request(path: Path) -> tuple[bytes, tuple[int, int]]:
    """The bytes of one request file and its (device, inode): a regular file, not followed through a link,
    at most MAX_REQUEST_BYTES."""
    # O_NOFOLLOW: a link is refused (ELOOP), not read; O_NONBLOCK: opening a FIFO does not wait for a writer.
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        mode, identity = st.st_mode, (st.st_dev, st.st_ino)
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
    return data, identity


def _set_aside(path: Path, suffix: str, why: str) -> None:
    """Rename ``path`` (a link itself, a folder whole) to ``<id>.json<suffix>``, or to a unique name beside it
    where that is taken: nothing is replaced, followed or deleted."""
    aside = _dropped(path).with_name(_dropped(path).name + suffix)
    note = ""
    if _occupied(aside):
        note = f" ({aside.name} was taken)"
        aside = aside.with_name(f"{aside.name}.{time.time_ns()}-{uuid.uuid4().hex[:8]}")
    try:
        os.replace(path, aside)  # a link is renamed, never its target
    except OSError as exc:
        warnings.warn(f"{why}; it could not be renamed to {aside.name} ({exc}), so it is left there (a request of "
                      "its id goes under a name of its own): remove it by hand", stacklevel=4)
        return
    warnings.warn(f"{why}; renamed to {aside.name}{note}", stacklevel=4)
