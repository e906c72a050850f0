"""The Ray executor: each job is a Ray task, so training and probes fan out over a cluster.

Selected by the settings (``[jobs] executor = "ray"``, see :mod:`engine.settings`) and
installed with ``pip install zooscope[ray]``. Nothing here is imported unless asked for:
``import engine.jobs`` never imports Ray.

A task runs :func:`engine.jobs.worker.run_job` inside a Ray worker process, exactly
what a local worker process runs. It reads its spec from ``inbox/<job>/spec.json``,
writes tensors to ``artifacts/`` and rows to result bundles in ``inbox/<job>/``; the
owner ingests them as it does for local workers. So **the store folder must be
reachable at the same path on every Ray node** (shared storage: NFS, a cluster file
system, or one machine), and Zooscope must be installed on the nodes. The task hands
back only ``(returncode, log tail)``; rows never travel through Ray's object store.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path
from typing import Any

from .base import Finished, log_tail, worker_env_overrides, worker_log_path

__all__ = ["RayExecutor", "require_ray"]

INSTALL_HINT = "pip install zooscope[ray]"
# Environment a Ray worker takes from the owner: Zooscope's own settings (cache folder, ...).
_FORWARDED_PREFIX = "ZOOSCOPE_"


def require_ray():
    """Import Ray, or raise an ImportError that says how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ImportError(
            f"executor 'ray' needs the Ray package, which is not installed ({exc}); "
            f"install it with `{INSTALL_HINT}`, or set [jobs] executor = \"local\""
        ) from None
    return ray


def _run_job_task(store_path: str, job_id: str) -> tuple[int, str]:
    """The body of a Ray task: run one job in this Ray worker, its output appended to ``worker.log``."""
    os.environ.update(worker_env_overrides())  # before the job imports numba (UMAP)
    from ..worker import run_job

    log_path = worker_log_path(Path(store_path), job_id)
    with open(log_path, "a") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
        print(f"[ray worker pid {os.getpid()} on {os.uname().nodename}]", flush=True)
        rc = run_job(Path(store_path), job_id)
    return rc, log_tail(log_path)


class RayExecutor:
    """Jobs as Ray tasks (an :class:`~engine.jobs.executors.base.Executor`, as :class:`~.local.LocalExecutor` is).

    Parameters
    ----------
    store_path : Path
        The store the workers write to. It must be shared storage, reachable at this
        same path from every Ray node (see the module docstring).
    address : str
        Where the Ray cluster is: ``"auto"`` (default) joins the cluster this machine
        belongs to and **starts a local Ray instance when there is none**; ``"local"``
        always starts a local instance; ``"ray://head:10001"`` connects a Ray client.
        If Ray is already initialised in this process (``ray.init`` was called, e.g. by
        a test), that instance is used and ``address`` is ignored.
    num_cpus : float
        CPUs one task asks for (Ray also sets the task's thread count from it).
    num_gpus : float
        GPUs one task asks for; fractions (e.g. 0.25) pack small models onto one GPU.
    max_workers : int, optional
        Jobs running at once (0 holds the queue); default: as many tasks as the
        cluster's CPUs (or GPUs, when ``num_cpus`` is 0) hold, at least one.

    Notes
    -----
    Ray never downloads anything here: usage statistics are off
    (``RAY_USAGE_STATS_ENABLED=0``), a local instance starts without its dashboard, and
    the only runtime environment a task gets is environment variables (``ZOOSCOPE_*``).
    Cancellation works as for local workers (the job's ``cancel`` file, on shared
    storage); :meth:`kill` force-cancels the task, which kills its worker process.
    """

    def __init__(self, store_path: Path, *, address: str = "auto", num_cpus: float = 1.0,
                 num_gpus: float = 0.0, max_workers: int | None = None):
        if num_cpus < 0 or num_gpus < 0:
            raise ValueError(f"num_cpus and num_gpus must be >= 0; got num_cpus={num_cpus}, num_gpus={num_gpus}")
        if max_workers is not None and max_workers < 0:
            raise ValueError(f"max_workers must be >= 0 (0 holds the queue); got {max_workers}")
        self.store_path = Path(store_path).expanduser().absolute()
        self.num_cpus, self.num_gpus = float(num_cpus), float(num_gpus)
        self._ray = require_ray()
        self._started_ray = _connect(self._ray, address)
        self.max_workers = max_workers if max_workers is not None else self._cluster_slots()
        self._remote = self._ray.remote(_run_job_task).options(
            num_cpus=self.num_cpus, num_gpus=self.num_gpus, max_retries=0, name="zooscope-job",
            runtime_env={"env_vars": {k: v for k, v in os.environ.items() if k.startswith(_FORWARDED_PREFIX)}},
        )
        self._refs: dict[str, Any] = {}  # job id -> ObjectRef of its task

    def _cluster_slots(self) -> int:
        resources = self._ray.cluster_resources()
        per_task = [(resources.get("CPU", 0.0), self.num_cpus), (resources.get("GPU", 0.0), self.num_gpus)]
        fits = [int(have // want) for have, want in per_task if want > 0]
        return max(1, min(fits)) if fits else 1

    @property
    def free_slots(self) -> int:
        return self.max_workers - len(self._refs)

    def running(self) -> list[str]:
        return list(self._refs)

    def start(self, job_id: str) -> None:
        """Submit the job as a Ray task. Returns None: the worker is not a process on this machine."""
        self._refs[job_id] = self._remote.remote(str(self.store_path), job_id)
        return None

    def poll(self) -> list[Finished]:
        if not self._refs:
            return []
        ready, _ = self._ray.wait(list(self._refs.values()), num_returns=len(self._refs), timeout=0)
        ready = set(ready)
        done = []
        for job_id, ref in list(self._refs.items()):
            if ref in ready:
                del self._refs[job_id]
                done.append(self._outcome(job_id, ref))
        return done

    def _outcome(self, job_id: str, ref) -> Finished:
        exceptions = self._ray.exceptions
        tail = log_tail(worker_log_path(self.store_path, job_id))
        try:
            rc, task_tail = self._ray.get(ref)
            return Finished(job_id, rc, task_tail)
        except exceptions.TaskCancelledError:
            return Finished(job_id, -signal.SIGKILL, tail, why="Ray task was cancelled (killed)")
        except exceptions.WorkerCrashedError as exc:
            return Finished(job_id, -signal.SIGKILL, tail, why=f"Ray worker process died: {_first_line(exc)}")
        except exceptions.RayError as exc:
            return Finished(job_id, 1, tail, why=f"Ray task failed: {type(exc).__name__}: {_first_line(exc)}")

    def kill(self, job_id: str) -> None:
        ref = self._refs.get(job_id)
        if ref is not None:
            self._ray.cancel(ref, force=True)

    def shutdown(self) -> None:
        """Kill the running tasks; stop Ray too if this executor started it."""
        for job_id in list(self._refs):
            self.kill(job_id)
        if self._refs:
            self._ray.wait(list(self._refs.values()), num_returns=len(self._refs), timeout=10)
        self._refs.clear()
        if self._started_ray and self._ray.is_initialized():
            self._ray.shutdown()
            _keeper_stop.set()


def _connect(ray, address: str) -> bool:
    """Initialise Ray unless it already is; True when this call started (or joined) it."""
    if ray.is_initialized():
        return False
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports sent anywhere
    quiet = {"log_to_driver": False, "configure_logging": False}
    if address not in ("local", "auto"):
        _init(ray, address=address, **quiet)
        return True
    if address == "auto":
        try:
            _init(ray, address="auto", **quiet)
            return True
        except ConnectionError:
            pass  # no cluster on this machine: start a local instance below
    _init(ray, address="local", include_dashboard=False, **quiet)
    return True


_keeper_stop = threading.Event()


def _init(ray, **kwargs) -> None:
    """``ray.init(**kwargs)`` from a thread that lives as long as this process.

    A local Ray instance's processes are started with a parent-death signal, which Linux
    sends when the *thread* that started them exits. The dashboard builds its executor in a
    script-run thread that ends after the run, which would take Ray down with it; so Ray is
    started from a daemon thread that never ends (until :meth:`RayExecutor.shutdown`).
    """
    if threading.current_thread() is threading.main_thread():
        ray.init(**kwargs)
        return
    started, failure = threading.Event(), []

    def keeper() -> None:
        try:
            ray.init(**kwargs)
        except BaseException as exc:  # handed to the caller below
            failure.append(exc)
        started.set()
        if not failure:
            _keeper_stop.wait()

    _keeper_stop.clear()
    threading.Thread(target=keeper, name="zooscope-ray", daemon=True).start()
    started.wait()
    if failure:
        raise failure[0]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
