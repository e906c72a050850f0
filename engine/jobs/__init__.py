"""Jobs: a kind + a validated spec -> an engine call in a worker -> rows in the store.

The owner of a store runs a :class:`Dispatcher`; workers (local processes, or Ray
tasks) run ``run_<kind>(spec, ctx)`` and hand results back as bundles.
``RayExecutor`` is imported on first use, so importing this package never imports Ray.
"""

from .context import JobCancelled, JobContext, read_progress, request_cancel
from .dispatcher import Dispatcher, TickReport
from .executors import Executor, LocalExecutor
from .kinds import get_kind, job_kinds, register_kind
from .phases import PhaseCell, PhaseRequest, phase_cells, phase_cells_status, probe_phase_cells
from .probe_job import (
    LoadedCheckpoint,
    ProbeInputs,
    ProbeResult,
    ProbeService,
    ProbeStatus,
    get_probe_kind,
    load_probe_result,
    probe_kinds,
    register_probe,
)
from .train_job import TrainJobSpec, run_train

__all__ = [
    "Dispatcher",
    "Executor",
    "JobCancelled",
    "JobContext",
    "LoadedCheckpoint",
    "ProbeInputs",
    "ProbeResult",
    "ProbeService",
    "ProbeStatus",
    "get_probe_kind",
    "load_probe_result",
    "probe_kinds",
    "register_probe",
    "LocalExecutor",
    "RayExecutor",
    "TickReport",
    "TrainJobSpec",
    "get_kind",
    "job_kinds",
    "read_progress",
    "register_kind",
    "request_cancel",
    "run_train",
    "PhaseCell",
    "PhaseRequest",
    "phase_cells",
    "phase_cells_status",
    "probe_phase_cells",
]


def __getattr__(name: str):
    if name == "RayExecutor":  # lazily: Ray is an optional dependency (zooscope[ray])
        from .executors.ray import RayExecutor

        return RayExecutor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
