"""Telling a live process from a recycled pid: a pid plus the time its process started.

A pid alone is not an identity: once a process exits, the kernel may hand its
number to an unrelated process. Records that name a process (``owner.json``, a
job's worker record) therefore keep its start time as well, and a process counts
as the recorded one only while both match.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["process_start_time", "process_is_running"]

_PROC = Path("/proc")


def process_start_time(pid: int) -> str | None:
    """An opaque token for when process ``pid`` started, or None if it does not exist or cannot be read.

    On Linux: the boot id plus the start time in clock ticks since boot, from
    ``/proc/<pid>/stat`` (exact, and unique across reboots). Elsewhere: what
    ``ps -o lstart=`` prints (to the second).
    """
    if not isinstance(pid, int) or pid <= 0:
        return None
    if _PROC.is_dir():
        stat = _proc_stat(pid)
        if stat is None:
            return None
        try:
            boot = (_PROC / "sys/kernel/random/boot_id").read_text().strip()
        except OSError:
            boot = "?"
        return f"linux:{boot}:{stat[19]}"  # field 22 of stat: starttime
    return _ps_start_time(pid)


def process_is_running(pid: int, started: str | None) -> bool:
    """Whether process ``pid`` is alive (not a zombie) and, when ``started`` is given, started then.

    ``started`` is a token from :func:`process_start_time` recorded earlier; without
    one (an old record) a live pid is taken at its word.
    """
    if not isinstance(pid, int) or pid <= 0 or not _pid_exists(pid):
        return False
    if _PROC.is_dir():
        stat = _proc_stat(pid)
        if stat is None or stat[0] == "Z":  # exited, not yet reaped
            return False
    if started is None:
        return True
    now = process_start_time(pid)
    return now is None or now == started


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def _proc_stat(pid: int) -> list[str] | None:
    """Fields 3.. of ``/proc/<pid>/stat`` (state first); the command name may hold spaces and ')'."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()


def _ps_start_time(pid: int) -> str | None:
    try:
        out = subprocess.run(["ps", "-o", "lstart=", "-p", str(pid)], capture_output=True, text=True,
                             timeout=5, env={"LC_ALL": "C", "PATH": os.environ.get("PATH", "")})
    except (OSError, subprocess.SubprocessError):
        return None
    text = " ".join(out.stdout.split())
    return f"{sys.platform}:{text}" if out.returncode == 0 and text else None
