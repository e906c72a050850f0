"""The job kinds: ``kind -> run_<kind>(spec, ctx)``.

A kind is registered with the function that runs it and, optionally, a function
that validates its spec at submission time, before anything is queued.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.registry import Registry, describe

from .context import JobContext

__all__ = ["JobKind", "get_kind", "job_kinds", "register_kind"]

RunFn = Callable[[Any, JobContext], dict[str, Any] | None]


@dataclass(frozen=True)
class JobKind:
    name: str
    run: RunFn
    validate: Callable[[dict[str, Any]], Any] | None = None
    description: str = ""


JOB_KINDS: Registry[JobKind] = Registry("job kind", label=lambda kind: describe(kind.run))


def register_kind(name: str, run: RunFn, *, validate=None, description: str = "") -> None:
    """Make ``run`` the job kind ``name``; the same registration again is a no-op, another one raises."""
    JOB_KINDS.register(name, JobKind(name, run, validate, description))


def get_kind(name: str) -> JobKind:
    _load_builtin()
    return JOB_KINDS.get(name)


def job_kinds() -> list[str]:
    _load_builtin()
    return JOB_KINDS.names()


def _load_builtin() -> None:
    if "train" in JOB_KINDS:
        return
    from .probe_job import ProbeJobSpec, run_probe
    from .train_job import TrainJobSpec, run_train

    register_kind("train", run_train, validate=TrainJobSpec.model_validate, description="train a zoo")
    register_kind("probe", run_probe, validate=ProbeJobSpec.model_validate, description="compute a probe")
    from .zoo import ZooPairsSpec, run_zoo_pairs

    register_kind("zoo.pairs", run_zoo_pairs, validate=ZooPairsSpec.model_validate,
                  description="distances between many pairs of a zoo's models (the zoo map)")
    register_kind("warm_umap", _run_warm_umap, description="compile UMAP's numba code into the on-disk cache")


def _run_warm_umap(spec, ctx: JobContext) -> dict:
    """Fill numba's on-disk cache (workers share ``NUMBA_CACHE_DIR``), so no person waits for compilation."""
    from engine.probes.representations import warm_umap

    ctx.progress(0.1, "compiling UMAP (once per machine)", force=True)
    return {"seconds": warm_umap(aligned=True)}
