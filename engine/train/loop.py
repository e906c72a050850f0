"""The plain training loop for one run."""

from __future__ import annotations

import math
import time

import torch
from torch import Tensor
from torch.func import functional_call

from engine import data as zdata
from engine import nets
from engine.config import TrainSpec

from .batches import BatchOrder
from .common import (
    CheckpointCallback,
    ProgressCallback,
    RunResult,
    eval_subset,
    resolve_device,
    task_metrics,
)
from .losses import loss_fn
from .optim import init_optim_state, optim_step

__all__ = ["train_run"]


def train_run(
    spec: TrainSpec,
    *,
    on_checkpoint: CheckpointCallback | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop=None,
    dataset: zdata.Dataset | None = None,
) -> RunResult:
    """Train one run from ``spec``; checkpoint on its schedule, stop at the first NaN/inf loss.

    Parameters
    ----------
    spec : TrainSpec
        The validated run.
    on_checkpoint : callable, optional
        ``(run=0, step, epoch, state, metrics)`` at every scheduled step; ``state`` is the
        model's ``state_dict`` (parameters and buffers) on the CPU.
    on_progress : callable, optional
        ``(step, total, [loss])`` about every 1% of the steps.
    should_stop : callable, optional
        Polled with progress; returning True ends the run with status ``cancelled``.
    dataset : Dataset, optional
        Preloaded data (must match ``spec.dataset``); loaded from the spec otherwise.
    """
    t0 = time.perf_counter()
    device = resolve_device(spec.device)
    ds = dataset if dataset is not None else zdata.load(spec.dataset)
    lossf = loss_fn(spec.loss, ds.task)
    model = nets.build(spec.arch, ds.input_shape, ds.n_outputs, vocab_size=ds.vocab_size, seed=spec.seed)
    model = model.to(device)
    x, y = ds.x_train.to(device), ds.y_train.to(device)
    evals = _eval_sets(ds, spec.eval_size, device)
    order = BatchOrder(len(x), spec.batch_size, spec.seed)
    params = {k: p.detach().clone() for k, p in model.named_parameters()}
    buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
    hp = spec.optim.model_dump()
    hp.update(beta1=spec.optim.betas[0], beta2=spec.optim.betas[1])
    state = init_optim_state(params, spec.optim.name)
    ckpts = set(spec.checkpoint_steps())
    report_every = max(1, min(spec.steps // 100, 25))  # progress (and cancellation) at least every 25 steps
    metrics: dict[str, float] = {}

    def checkpoint(step: int) -> None:
        nonlocal metrics
        metrics = _evaluate(model, params, buffers, evals, lossf)
        if on_checkpoint is not None:
            full = {**params, **buffers}
            on_checkpoint(0, step, order.epoch(step), {k: v.detach().cpu().clone() for k, v in full.items()}, metrics)

    checkpoint(0)
    for step in range(1, spec.steps + 1):
        idx = order.next().to(device)
        model.train()
        for p in params.values():
            p.requires_grad_(True)
        out = functional_call(model, (params, buffers), (x[idx],))
        loss = lossf(out, y[idx])
        grads = dict(zip(params, torch.autograd.grad(loss, list(params.values()))))
        value = float(loss.detach())
        if not math.isfinite(value):
            return RunResult(status="diverged", steps=step, diverged_step=step, metrics=metrics,
                             wall_s=time.perf_counter() - t0, device=str(device))
        for p in params.values():
            p.requires_grad_(False)
        optim_step(spec.optim.name, params, grads, state, hp)
        if step in ckpts:
            checkpoint(step)
        if step % report_every == 0 or step == spec.steps:
            if on_progress is not None:
                on_progress(step, spec.steps, [value])
            if should_stop is not None and should_stop():
                return RunResult(status="cancelled", steps=step, diverged_step=None, metrics=metrics,
                                 wall_s=time.perf_counter() - t0, device=str(device))
    return RunResult(status="done", steps=spec.steps, diverged_step=None, metrics=metrics,
                     wall_s=time.perf_counter() - t0, device=str(device))


def _eval_sets(ds: zdata.Dataset, size: int, device: torch.device) -> dict[str, tuple[Tensor, Tensor]]:
    return {
        split: tuple(t.to(device) for t in eval_subset(xs, ys, size))
        for split, xs, ys in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test))
    }


@torch.no_grad()
def _evaluate(model, params, buffers, evals, lossf) -> dict[str, float]:
    model.eval()
    out = {}
    for split, (xs, ys) in evals.items():
        loss, acc = task_metrics(functional_call(model, (params, buffers), (xs,)), ys, lossf)
        out[f"{split}_loss"], out[f"{split}_acc"] = loss, acc
    return out
