"""Executors start workers for jobs: local worker processes (default) or Ray tasks.

The interface is :class:`Executor` (a Protocol, in :mod:`.base`); :func:`make_executor`
builds the one the settings ask for (``[jobs] executor``). ``RayExecutor`` is imported
on first use, so importing this package never imports Ray.
"""

from __future__ import annotations

from pathlib import Path

from .base import Executor, Finished, log_tail, worker_env_overrides, worker_log_path
from .local import LocalExecutor, worker_env

__all__ = [
    "Executor",
    "Finished",
    "LocalExecutor",
    "RayExecutor",
    "log_tail",
    "make_executor",
    "worker_env",
    "worker_env_overrides",
    "worker_log_path",
]


def make_executor(store_path: Path, settings=None) -> Executor:
    """The executor the settings ask for (``[jobs] executor``): local worker processes by default.

    ``executor = "ray"`` gives a :class:`~engine.jobs.executors.ray.RayExecutor` (needs
    ``pip install zooscope[ray]``). Its number of jobs at once is ``workers`` when the
    settings name it, else as many tasks as the Ray cluster has CPUs for.
    """
    from engine.settings import load_settings

    settings = settings or load_settings(store_path)
    jobs = settings.jobs
    if jobs.executor == "local":
        return LocalExecutor(store_path, max_workers=jobs.workers)
    if jobs.executor == "ray":
        from .ray import RayExecutor, require_ray

        require_ray()
        return RayExecutor(store_path, address=jobs.ray_address, num_cpus=jobs.ray_num_cpus,
                           num_gpus=jobs.ray_num_gpus,
                           max_workers=jobs.workers if "workers" in jobs.model_fields_set else None)
    raise ValueError(f"executor {jobs.executor!r} is not available in this build; use 'local' or 'ray'")


def __getattr__(name: str):
    if name == "RayExecutor":  # lazily: Ray is an optional dependency (zooscope[ray])
        from .ray import RayExecutor

        return RayExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
