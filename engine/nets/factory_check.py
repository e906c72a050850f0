"""The factory check before a sweep is queued, run in a child process with a time and a memory limit.

:func:`engine.nets.check_factory` imports the user's module and calls the factory: user code. In
the process that owns the store (the dashboard server, the CLI) a factory that loops forever would
block it and one that allocates without bound would take it down, so the boundaries that queue
work (:func:`engine.train.check_registered`) call :func:`check_factory_bounded` instead. It runs
this module's :func:`main` in ``python -c`` the way a local worker is started (same interpreter,
repository root, environment), hands it the spec and this process's ``[plugins]`` configuration,
and the child limits its own address space (``RLIMIT_AS``) before it imports the user's module.
The parent waits at most :data:`FACTORY_CHECK_TIMEOUT_S` and then kills the child's process group.

The request, the verdict and the child's output are temporary files, not pipes, so a process the
factory forks cannot hold the parent up or fill its memory; the child may write at most
:data:`FACTORY_CHECK_OUTPUT_BYTES` to any file (``RLIMIT_FSIZE``). When the child ends, in time or
not, its process group is killed before the child is reaped, so what it left running ends too.

What this is not: a sandbox. The check guards the owner against a factory that loops, hoards
memory, crashes or prints without end, not against one written to deceive it (the same code runs
unbounded in the workers that train it). The user's code runs in the checking process, so it can
write a verdict of its own to the verdict's descriptor and exit; and a grandchild that leaves the
process group (``os.setsid()``) outlives the kill, though still under the child's limits, which
it inherits: memory, file size and :data:`FACTORY_CHECK_CPU_S` of CPU time. Reaching those would take a subreaper or a
cgroup for the owner's process; ``RLIMIT_NPROC`` cannot do it, as it counts every thread of the
user's, the owner's included.

Everything decided without running user code (the import path's form, pretrained weights, an
allowed module) is checked here first, so a typo costs no process start.

One submission may check a spec twice (a form validates it, then the queue checks it again before
writing). Inside :func:`factory_checks_reused` a check that passed is not run again while nothing
it depended on changed: the spec and limits, the ``[plugins]`` configuration, and the plugin
folders' code — the SHA-256 of every code file under them, taken before the check and again after
it (a pass is kept only if they did not change while it ran) and before each reuse, so a file
edited or added in between is checked again.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from engine.config import ArchSpec

from .factory import check_factory, check_factory_source
from .plugins import FactoryError, plugin_config, use_plugins

__all__ = ["FACTORY_CHECK_CPU_S", "FACTORY_CHECK_MEMORY_BYTES", "FACTORY_CHECK_OUTPUT_BYTES",
           "FACTORY_CHECK_TIMEOUT_S", "check_factory_bounded", "factory_checks_reused"]

FACTORY_CHECK_TIMEOUT_S = 60.0  # wall clock for importing the module and building the model once
# Address space of the checking process (8 GiB): torch and transformers take ~1.5 GiB of it once
# imported; a factory that cannot build on the meta device builds for real, and a model of
# engine.bounds.MAX_MODEL_PARAMETERS float32 values is 4 GiB.
FACTORY_CHECK_MEMORY_BYTES = 8 << 30
_ROOT = Path(__file__).resolve().parents[2]  # the repository root: `python -m engine...` runs from here
# The child's entry (``-c``, not ``-m``: engine.nets imports this module, and runpy warns about a module
# run as __main__ that its package has already imported). The repository root is its sys.path[0].
_CHILD = "import sys; from engine.nets.factory_check import main; sys.exit(main())"
_STDERR_TAIL = 600  # bytes of the child's stderr quoted when it ends without a verdict
_VERDICT_BYTES = 64 << 10  # the end of the verdict file read back: one JSON line, however much else is there
_VERDICT_MESSAGE = 4000  # characters of a verdict's error message raised
# What the checking process may write to any file (RLIMIT_FSIZE, 64 MiB), its stderr included: a factory that
# prints without end fills neither the disk nor memory; past it a write fails (EFBIG) and the check fails.
FACTORY_CHECK_OUTPUT_BYTES = 64 << 20
# CPU seconds each process of the check may use (RLIMIT_CPU, then SIGXCPU; SIGKILL 5 s later). The wall clock
# limit ends the check; this one also holds in a process that left its group (os.setsid()) and so outlived the
# kill: such a process may sleep on, but not compute for ever. Well above what FACTORY_CHECK_TIMEOUT_S allows
# a one-thread check.
FACTORY_CHECK_CPU_S = 600
# Checks passed in the current factory_checks_reused() block: request -> the plugin folders' snapshot. A context
# variable, so each Streamlit session (a thread) and each submission has its own, and none outlives its block.
_PASSED: ContextVar[dict[str, dict[str, str]] | None] = ContextVar("factory_checks_passed", default=None)


@contextmanager
def factory_checks_reused() -> Iterator[None]:
    """Within the block (one submission), :func:`check_factory_bounded` runs once per unchanged spec.

    A check that passed is reused for the same spec, limits and ``[plugins]`` configuration while
    the plugin folders' code files are the ones it ran with (:func:`_plugin_snapshot`, taken again
    before each reuse); anything else, and every failure, is checked again. Outside such a block
    every call runs the check.
    """
    token = _PASSED.set({})
    try:
        yield
    finally:
        _PASSED.reset(token)


def check_factory_bounded(spec: ArchSpec, *, timeout_s: float | None = None,
                          memory_bytes: int | None = None) -> None:
    """:func:`~engine.nets.check_factory` in a child process, at most ``timeout_s`` and ``memory_bytes``.

    Parameters
    ----------
    spec : ArchSpec
        The architecture; nothing is run for a built-in one (``spec.factory is None``).
    timeout_s : float, optional
        Wall-clock seconds before the child (and anything it started) is killed; defaults to
        :data:`FACTORY_CHECK_TIMEOUT_S` (read at call time, so an owner may change it).
    memory_bytes : int, optional
        The child's address-space limit (``RLIMIT_AS``), set before the user's module is
        imported; defaults to :data:`FACTORY_CHECK_MEMORY_BYTES`.

    Raises
    ------
    FactoryError
        Whatever :func:`check_factory` raises, with its message; or that the check did not
        finish in time, ran out of memory, or was killed.
    """
    if spec.factory is None:
        return
    timeout_s = FACTORY_CHECK_TIMEOUT_S if timeout_s is None else timeout_s
    memory_bytes = FACTORY_CHECK_MEMORY_BYTES if memory_bytes is None else memory_bytes
    check_factory_source(spec.factory, spec.kwargs)  # no user code runs for these
    config = plugin_config()
    request = {"arch": spec.model_dump(mode="json"), "memory_bytes": int(memory_bytes),
               "plugins": {"paths": [str(p) for p in config.paths], "packages": list(config.packages)}}
    request["output_bytes"] = int(FACTORY_CHECK_OUTPUT_BYTES)
    request["cpu_s"] = int(FACTORY_CHECK_CPU_S)
    passed, reuse_key = _PASSED.get(), json.dumps({**request, "timeout_s": timeout_s}, sort_keys=True)
    snapshot = None if passed is None else _plugin_snapshot(config.paths)
    if snapshot is not None and passed.get(reuse_key) == snapshot:
        return
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # a meta build needs no threads
    # No pipes: the request, the verdict and what the user's code prints are files. A pipe's reader waits
    # for every writer, and a process the factory forked holds the child's descriptors: the parent would
    # wait for it (or buffer all it writes) instead of for the child.
    with tempfile.TemporaryFile() as given, tempfile.TemporaryFile() as said, tempfile.TemporaryFile() as log:
        given.write(json.dumps(request).encode())
        given.seek(0)
        proc = subprocess.Popen([sys.executable, "-c", _CHILD], stdin=given, stdout=said, stderr=log,
                                cwd=_ROOT, env=env, start_new_session=True)  # its own process group
        try:
            finished = _wait_unreaped(proc.pid, timeout_s)
        except BaseException:  # interrupted while waiting: the child must not outlive the check
            _kill_group(proc)
            raise
        _kill_group(proc)  # what the child started and left running in its group ends with the check
        if not finished:
            raise FactoryError(
                f"factory {spec.factory!r} did not finish its check within {timeout_s:g} s and was stopped "
                "(engine.nets.factory_check.FACTORY_CHECK_TIMEOUT_S): importing its module and building the "
                "model once should take seconds; does it loop, wait for input or download something?")
        out = _last_bytes(said, _VERDICT_BYTES)
        err = _last_bytes(log, _STDERR_TAIL).decode(errors="replace").strip()
    _raise_verdict(spec.factory, proc.returncode, out, err, memory_bytes)
    if snapshot is not None and _plugin_snapshot(config.paths) == snapshot:  # not changed while it ran
        passed[reuse_key] = snapshot


# What _plugin_snapshot reads at most; past it a check is not reused (it runs again), never trusted.
_SNAPSHOT_ENTRIES, _SNAPSHOT_BYTES = 20_000, 64 << 20
_CODE_SUFFIXES = frozenset({".py", ".so", ".pyd", ".pth"})  # not .pyc: the check itself writes them


def _plugin_snapshot(paths) -> dict[str, str] | None:
    """``{file: SHA-256}`` of every code file under the plugin folders (links not followed), or None
    when the folders hold more than :data:`_SNAPSHOT_ENTRIES` entries or :data:`_SNAPSHOT_BYTES` of
    code, or a file cannot be read."""
    files, entries, total = {}, 0, 0
    for folder in paths:
        for path in sorted(Path(folder).rglob("*")):
            entries += 1
            if entries > _SNAPSHOT_ENTRIES:
                return None
            if path.suffix not in _CODE_SUFFIXES or path.is_symlink() or not path.is_file():
                continue
            try:
                with open(path, "rb") as fh:
                    total += os.fstat(fh.fileno()).st_size
                    if total > _SNAPSHOT_BYTES:
                        return None
                    files[str(path)] = hashlib.file_digest(fh, "sha256").hexdigest()
            except OSError:
                return None
    return files


def _wait_unreaped(pid: int, timeout_s: float) -> bool:
    """Whether the child ended within ``timeout_s``; it is left unreaped, so its group id is not reused."""
    deadline = time.monotonic() + timeout_s
    delay = 0.005
    while True:
        if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            return True
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(delay, left))
        delay = min(delay * 2, 0.1)


def _last_bytes(fh, n: int) -> bytes:
    fh.seek(0, os.SEEK_END)
    fh.seek(max(0, fh.tell() - n))
    return fh.read()


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the child's process group, then reap the child.

    Called before the child is reaped, so its id is still its group's. A process that left the
    group (``os.setsid()`` in a grandchild) is not reached: see the module's notes.
    """
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def _raise_verdict(factory: str, returncode: int, out: bytes, tail: str, memory_bytes: int) -> None:
    """Raise what the check found, if it did not pass."""
    try:
        verdict = json.loads(out.decode().strip().splitlines()[-1])
    except (ValueError, IndexError, RecursionError):  # the user's code can write there too: "[[[[..."
        verdict = None
    if isinstance(verdict, dict) and verdict.get("ok") is True and returncode == 0:
        return
    limit = f"{memory_bytes / (1 << 30):g} GiB (engine.nets.factory_check.FACTORY_CHECK_MEMORY_BYTES)"
    if isinstance(verdict, dict) and isinstance(verdict.get("error"), str):
        message = verdict["error"][:_VERDICT_MESSAGE]
        if verdict.get("memory"):
            message += f" — the check may use at most {limit} of memory: make the model smaller in kwargs"
        raise FactoryError(message)
    if returncode < 0:
        try:
            name = signal.Signals(-returncode).name
        except ValueError:
            name = f"signal {-returncode}"
        raise FactoryError(f"factory {factory!r}: its check was killed by {name} (the check may use at most {limit}; "
                           f"a SIGKILL is usually the system running out of memory){': ' + tail if tail else ''}")
    raise FactoryError(f"factory {factory!r}: its check ended with exit status {returncode} and no verdict "
                       f"(did the module call sys.exit or os._exit?){': ' + tail if tail else ''}")


# -- the child --------------------------------------------------------------------------------------------

def _is_memory_error(exc: BaseException) -> bool:
    text = str(exc)
    return (isinstance(exc, MemoryError) or "MemoryError" in text or "can't allocate memory" in text
            or "not enough memory" in text or "std::bad_alloc" in text)


def _check(request: dict[str, Any]) -> dict[str, Any]:
    try:
        use_plugins(request["plugins"]["paths"], request["plugins"]["packages"])
        check_factory(ArchSpec.model_validate(request["arch"]))
    except MemoryError as exc:
        return {"ok": False, "memory": True, "error": f"factory {request['arch'].get('factory')!r} ran out of "
                                                      f"memory during its check ({type(exc).__name__})"}
    except ValueError as exc:  # FactoryError, ConfigError: the message is for the user
        return {"ok": False, "memory": _is_memory_error(exc), "error": str(exc)}
    except Exception as exc:  # noqa: BLE001 - reported to the parent, which raises it as a FactoryError
        return {"ok": False, "memory": _is_memory_error(exc),
                "error": f"factory {request['arch'].get('factory')!r}: its check raised "
                         f"{type(exc).__name__}: {str(exc)[:300]}"}
    return {"ok": True}



def main() -> int:
    """The child: a JSON request on stdin, one JSON verdict line on stdout."""
    request = json.loads(sys.stdin.read())
    limit = int(request["memory_bytes"])
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    written = int(request["output_bytes"])
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit a write raises OSError (EFBIG), not a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (written, written))
    cpu = int(request["cpu_s"])
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))  # inherited: what the factory starts is bounded too
    verdict_fd = os.dup(1)
    os.dup2(2, 1)  # what the user's code prints goes to stderr, never into the verdict
    verdict = _check(request)
    with os.fdopen(verdict_fd, "w") as fh:
        fh.write(json.dumps(verdict) + "\n")
    return 0

