"""Single-owner locking of a store folder.

The owner takes an exclusive, non-blocking ``flock`` on ``owner.lock`` before it
opens ``store.duckdb``, then records itself in ``owner.json``. The kernel drops
the lock when the owner dies, however it dies, so a stale ``owner.json`` left by
a killed process is simply overwritten by the next owner. Read-only inspectors
take a shared lock: any number of them may look while nobody owns the store.

``owner.json`` also guards the lock: it records the owner's pid and process start
time, so if ``owner.lock`` was deleted (and a new, unlocked file took its name),
a live owner is still recognised and nobody else takes the store. A process only
ever removes an ``owner.json`` that records itself.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import weakref
from datetime import UTC, datetime
from typing import Any

from store.errors import StoreBusyError
from store.paths import StoreLayout
from store.processes import process_is_running, process_start_time

__all__ = ["OwnerLock", "read_owner"]

_LIVE_LOCKS: weakref.WeakSet[OwnerLock] = weakref.WeakSet()


def _forget_locks_in_child() -> None:
    # A forked child (e.g. a multiprocessing worker) inherits the lock's file
    # description; dropping the child's copy keeps the lock with the parent
    # only, so the store is freed when the owner exits even if workers live on.
    for lock in list(_LIVE_LOCKS):
        lock._close_fd()


os.register_at_fork(after_in_child=_forget_locks_in_child)


class OwnerLock:
    """A held ``flock`` on ``<store>/owner.lock``.

    Use :meth:`acquire`; call :meth:`release` when done.
    """

    def __init__(self, layout: StoreLayout, fd: int, exclusive: bool):
        self.layout = layout
        self.exclusive = exclusive
        self._fd: int | None = fd
        _LIVE_LOCKS.add(self)

    @classmethod
    def acquire(cls, layout: StoreLayout, *, exclusive: bool) -> OwnerLock:
        """Take the lock without waiting.

        Parameters
        ----------
        layout : StoreLayout
            The store folder (must exist).
        exclusive : bool
            True for the owner (also writes ``owner.json``), False for a
            read-only inspector.

        Raises
        ------
        StoreBusyError
            If another process holds a conflicting lock.
        """
        fd = os.open(layout.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise busy_error(layout) from None
        holder = read_owner(layout)
        if holder is not None and _is_live_here(holder):
            # The lock was free although the recorded owner runs: owner.lock was
            # deleted or replaced under it. Its owner.json is the proof; leave it.
            os.close(fd)
            raise busy_error(layout, lock_file_replaced=True)
        lock = cls(layout, fd, exclusive)
        if exclusive:
            _write_owner_json(layout)
        return lock

    @property
    def held(self) -> bool:
        return self._fd is not None

    def release(self) -> None:
        """Remove ``owner.json`` (owner only, and only if it records this process) and drop the lock. Idempotent."""
        if self._fd is None:
            return
        if self.exclusive and _records_this_process(read_owner(self.layout)):
            self.layout.owner_json.unlink(missing_ok=True)
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._close_fd()

    def _close_fd(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _write_owner_json(layout: StoreLayout) -> None:
    info = {
        "pid": os.getpid(),
        "pid_started": process_start_time(os.getpid()),
        "host": socket.gethostname(),
        "command": shlex.join(getattr(sys, "orig_argv", sys.argv))[:500],
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    tmp = layout.owner_json.with_name(f".owner.json.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info, indent=2))
    os.replace(tmp, layout.owner_json)


def read_owner(layout: StoreLayout) -> dict[str, Any] | None:
    """Return the recorded owner (``owner.json``), or None if absent or unreadable."""
    try:
        info = json.loads(layout.owner_json.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _records_this_process(holder: dict[str, Any] | None) -> bool:
    return (holder is not None and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname()
            and holder.get("pid_started") in (None, process_start_time(os.getpid())))


def _is_live_here(holder: dict[str, Any]) -> bool:
    """Whether ``holder`` (an owner.json record) is a running process on this host."""
    pid, started = holder.get("pid"), holder.get("pid_started")
    return (holder.get("host") == socket.gethostname() and isinstance(pid, int)
            and process_is_running(pid, started if isinstance(started, str) else None))


def busy_error(layout: StoreLayout, *, duckdb_detail: str | None = None,
               lock_file_replaced: bool = False) -> StoreBusyError:
    """Build the error for a store held by someone else, naming the holder.

    ``duckdb_detail`` is given when the owner lock was free but DuckDB's own
    file lock was not: some process opened ``store.duckdb`` directly.
    ``lock_file_replaced`` is given when the lock was free but ``owner.json``
    names a live owner: its ``owner.lock`` was deleted or replaced.
    """
    what_to_do = (
        "Stop that process to use the store directly, or use its dashboard; `zooscope train` and "
        f"`zooscope import` may also leave it running: they drop their request into {layout.requests}/ "
        "and the owner queues it."
    )
    if duckdb_detail is not None:
        return StoreBusyError(
            f"store {layout.root} is in use by another process ({duckdb_detail or 'DuckDB lock held'}) "
            f"that opened {layout.db.name} directly, not through store.open_store. {what_to_do}",
            path=layout.root,
        )
    holder = read_owner(layout)
    if holder is None:
        return StoreBusyError(
            f"store {layout.root} is in use by another process (a read-only inspection: no owner.json "
            f"is recorded). {what_to_do}",
            path=layout.root,
        )
    pid = holder.get("pid")
    command = " ".join(str(holder.get("command", "?")).split())
    if len(command) > 200:
        command = command[:197] + "..."
    who = (
        f"pid {pid} on host {holder.get('host')} running `{command}`, "
        f"owner since {holder.get('started_at')}"
    )
    if lock_file_replaced:
        who += (f"; its lock file {layout.lock.name} was deleted or replaced while it ran, so the lock no "
                "longer shows it (it is recreated when that owner restarts)")
    elif holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _is_live_here(holder):
        who += (
            f"; pid {pid} has exited, so the lock is held by a child it left running or by a "
            "read-only inspection"
        )
    return StoreBusyError(f"store {layout.root} is owned by {who}. {what_to_do}", path=layout.root, holder=holder)
