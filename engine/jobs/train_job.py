"""The ``train`` job: train every run of a zoo, population by population."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from engine import data as zdata
from engine import nets
from engine.bounds import MAX_RUNS
from engine.config import SweepSpec, TrainSpec
from engine.train import RunResult, check_registered, population_groups, train_population, train_run

from .context import JobCancelled, JobContext

__all__ = ["TrainJobSpec", "run_train"]


class TrainJobSpec(BaseModel):
    """A zoo to train: the sweep and the run ids the owner already created (in grid order)."""

    model_config = ConfigDict(extra="forbid")

    sweep: SweepSpec
    zoo_id: str
    run_ids: list[str]
    population: bool = True  # train groups of compatible runs at once with torch.func
    max_population: int = Field(64, ge=1, le=MAX_RUNS)  # split larger groups

    @field_validator("sweep")
    @classmethod
    def _names_registered(cls, sweep: SweepSpec, info: ValidationInfo) -> SweepSpec:
        # Validation context: {"names_checked": True} when the caller has just run check_registered on this
        # sweep (Dispatcher.submit_sweep: a factory is not checked a second time inside its transaction);
        # {"isolated": False} in a worker, which runs the user's factory anyway and can be killed by the owner.
        context = info.context or {}
        if not context.get("names_checked"):
            check_registered(sweep, isolated=context.get("isolated", True))
        return sweep


def _now() -> datetime:
    """Naive UTC, as the catalog stores times."""
    return datetime.now(UTC).replace(tzinfo=None)


def _finite(v: float) -> float | None:
    return v if v is not None and math.isfinite(v) else None


class _RunRecorder:
    """Turns training callbacks into artifact, checkpoint and metric rows, emitted in bundles."""

    def __init__(self, ctx: JobContext, run_ids: list[str]):
        self.ctx, self.run_ids = ctx, run_ids
        self.rows: dict[str, list[dict[str, Any]]] = {"checkpoint": [], "metric": [], "run": []}
        self.last_emit = time.monotonic()

    def on_checkpoint(self, run: int, step: int, epoch: float, state, metrics: dict[str, float]) -> None:
        run_id = self.run_ids[run]
        sha = self.ctx.put_tensors(state)
        self.rows["checkpoint"].append({
            "checkpoint_id": uuid4().hex, "run_id": run_id, "step": step, "epoch": float(epoch),
            "artifact_sha": sha, **{k: _finite(metrics.get(k)) for k in
                                    ("train_loss", "train_acc", "test_loss", "test_acc")},
            "created_at": _now(),
        })
        for name, value in metrics.items():
            split, metric = name.split("_", 1)
            if math.isfinite(value):
                self.rows["metric"].append({"run_id": run_id, "step": step, "split": split, "name": metric,
                                            "value": float(value)})

    def on_batch_losses(self, step: int, losses: list[float]) -> None:
        for run_id, loss in zip(self.run_ids, losses):
            if math.isfinite(loss):
                self.rows["metric"].append({"run_id": run_id, "step": step, "split": "batch", "name": "loss",
                                            "value": float(loss)})

    def set_status(self, run: int, **fields: Any) -> None:
        self.rows["run"].append({"run_id": self.run_ids[run], **fields})

    def emit(self, force: bool = False) -> None:
        if force or time.monotonic() - self.last_emit > 2.0:
            self.ctx.emit(self.rows)
            self.rows = {"checkpoint": [], "metric": [], "run": []}
            self.last_emit = time.monotonic()


def run_train(spec: TrainJobSpec | dict, ctx: JobContext) -> dict[str, Any]:
    """Train the zoo's runs; returns a summary (runs done / diverged)."""
    spec = TrainJobSpec.model_validate(spec, context={"isolated": False})  # this process is the worker
    runs = spec.sweep.expand()
    if len(runs) != len(spec.run_ids):
        raise ValueError(f"train job has {len(spec.run_ids)} run ids for {len(runs)} runs")
    groups = population_groups(runs) if spec.population else [[i] for i in range(len(runs))]
    groups = [g[i : i + spec.max_population] for g in groups for i in range(0, len(g), spec.max_population)]
    total_steps = sum(runs[g[0]].steps for g in groups)
    datasets: dict[str, zdata.Dataset] = {}
    built_by: dict[str, str] = {}  # arch spec JSON -> its provenance record (JSON), computed once
    done_steps, counts = 0, {"done": 0, "diverged": 0}
    for gi, group in enumerate(groups):
        ctx.check_cancelled()
        specs = [runs[i] for i in group]
        rec = _RunRecorder(ctx, [spec.run_ids[i] for i in group])
        for k, run_spec in enumerate(specs):
            rec.set_status(k, status="running", started_at=_now(), origin="trained",
                           built_by_json=_built_by(run_spec, built_by))
        rec.emit(force=True)

        n_runs = len(group)

        def progress(step: int, total: int, losses: list[float], _base=done_steps, _g=gi, _rec=rec,
                     _n=n_runs) -> None:
            if step % max(1, total // 200) == 0 or step == total:  # at most ~200 loss points per run
                _rec.on_batch_losses(step, losses)
            finite = [v for v in losses if math.isfinite(v)]
            loss = sum(finite) / len(finite) if finite else float("nan")
            ctx.progress((_base + step) / total_steps,
                         f"group {_g + 1}/{len(groups)} ({_n} runs): step {step}/{total}, loss {loss:.4g}")
            _rec.emit()

        results = _train_group(specs, rec, progress, ctx, datasets)
        for k, res in enumerate(results):
            rec.set_status(k, status=res.status, diverged_step=res.diverged_step, finished_at=_now(),
                           wall_s=res.wall_s, device=res.device)
            counts[res.status] = counts.get(res.status, 0) + 1
        rec.emit(force=True)
        done_steps += specs[0].steps
        if any(r.status == "cancelled" for r in results):
            raise JobCancelled(f"job {ctx.job_id} was cancelled")
    ctx.progress(1.0, f"trained {len(runs)} runs", force=True)
    return {"runs": len(runs), **counts}


def _built_by(run: TrainSpec, cache: dict[str, str]) -> str:
    """What code builds ``run``'s model (:func:`engine.nets.provenance`), as this worker sees it now."""
    key = run.arch.to_json()
    if key not in cache:
        cache[key] = json.dumps(nets.provenance(run.arch), sort_keys=True)
    return cache[key]


def _train_group(specs, rec: _RunRecorder, progress, ctx: JobContext, datasets) -> list[RunResult]:
    if len(specs) == 1:
        return [train_run(specs[0], on_checkpoint=rec.on_checkpoint, on_progress=progress,
                          should_stop=ctx.cancelled, dataset=datasets.get(specs[0].dataset.to_json()))]
    return train_population(specs, on_checkpoint=rec.on_checkpoint, on_progress=progress,
                            should_stop=ctx.cancelled, datasets=datasets)
