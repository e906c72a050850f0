"""Spawning and instability analysis: when does training become stable to SGD noise?

Train one parent run; at step ``k`` fork it into two children that see the same data
in different orders and train each to the end; the error barrier between the two
children's final weights is the *instability* at ``k`` (Frankle et al. 2020). Early
forks end in different basins (a barrier); after some ``k`` the children stay
linearly connected.

The training arithmetic is that of :func:`engine.train.train_run` (same
:class:`~engine.train.BatchOrder`, loss and :func:`~engine.train.optim_step`), so the
parent at step ``k`` is the checkpoint ``train_run`` would save at step ``k``. A fork
copies the parameters, BatchNorm buffers *and* the optimiser state (momentum, Adam
moments); only the data order differs between the children (``seeds``). The loop is
written here rather than reusing ``train_run`` because a fork needs to start from a
given state and optimiser state, which ``train_run`` does not take.

References
----------
J. Frankle, G. K. Dziugaite, D. Roy and M. Carbin, "Linear Mode Connectivity and the
Lottery Ticket Hypothesis", ICML 2020.
S. Fort, G. K. Dziugaite, M. Paul, S. Kharaghani, D. Roy and S. Ganguli, "Deep learning
versus kernel learning: an empirical study of loss landscape geometry and the time
evolution of the Neural Tangent Kernel", NeurIPS 2020 (spawning).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.func import functional_call

from engine import data as zdata
from engine import nets
from engine.config import TrainSpec
from engine.probes.connectivity.interpolation import BarrierKind, InterpolationCurve, barrier, interpolate
from engine.train import BatchOrder, OptimState, init_optim_state, loss_fn, optim_step, resolve_device

__all__ = ["Instability", "TrainState", "instability_analysis", "spawn", "train_steps"]


@dataclass
class TrainState:
    """Everything a fork copies: parameters, buffers, optimiser state and the step reached."""

    params: dict[str, Tensor]
    buffers: dict[str, Tensor]
    optim: OptimState
    step: int = 0

    def copy(self) -> TrainState:
        return TrainState({k: v.clone() for k, v in self.params.items()},
                          {k: v.clone() for k, v in self.buffers.items()}, copy.deepcopy(self.optim), self.step)

    def state_dict(self) -> dict[str, Tensor]:
        return {k: v.detach().cpu().clone() for k, v in {**self.params, **self.buffers}.items()}


def _hparams(spec: TrainSpec) -> dict:
    hp = spec.optim.model_dump()
    hp.update(beta1=spec.optim.betas[0], beta2=spec.optim.betas[1])
    return hp


def train_steps(model, state: TrainState, x: Tensor, y: Tensor, spec: TrainSpec, order: BatchOrder,
                n_steps: int) -> TrainState:
    """Advance ``state`` (in place) by ``n_steps`` optimiser steps on batches from ``order``.

    Raises
    ------
    FloatingPointError
        If the loss becomes NaN/inf (the run diverged).
    """
    hp = _hparams(spec)
    lossf = loss_fn(spec.loss)  # the run's loss, checked against the targets' shapes
    model.train()
    for _ in range(n_steps):
        idx = order.next().to(x.device)
        for p in state.params.values():
            p.requires_grad_(True)
        loss = lossf(functional_call(model, (state.params, state.buffers), (x[idx],)), y[idx])
        grads = dict(zip(state.params, torch.autograd.grad(loss, list(state.params.values()))))
        for p in state.params.values():
            p.requires_grad_(False)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training diverged at step {state.step + 1} (loss {float(loss)}); "
                                     "lower the learning rate")
        optim_step(spec.optim.name, state.params, grads, state.optim, hp)
        state.step += 1
    return state


def spawn(model, parent: TrainState, x: Tensor, y: Tensor, spec: TrainSpec, *, seeds: Sequence[int] = (1, 2),
          steps: int | None = None) -> list[TrainState]:
    """Children of ``parent`` trained to ``spec.steps`` (or ``steps`` more), one per data-order seed.

    Parameters
    ----------
    seeds : sequence of int, default (1, 2)
        Data-order seed of each child; they must differ.
    """
    if len(set(seeds)) != len(seeds) or len(seeds) < 2:
        raise ValueError(f"spawning needs at least two different data-order seeds; got {list(seeds)}")
    n_steps = spec.steps - parent.step if steps is None else steps
    if n_steps < 0:
        raise ValueError(f"the parent is at step {parent.step}, past the run's {spec.steps} steps")
    children = []
    for s in seeds:
        order = BatchOrder(len(x), spec.batch_size, s)
        children.append(train_steps(model, parent.copy(), x, y, spec, order, n_steps))
    return children


@dataclass(frozen=True)
class Instability:
    """Barrier between spawned children as a function of the spawn step.

    Attributes
    ----------
    spawn_steps : np.ndarray, shape (K,)
    barrier : np.ndarray, shape (K,)
        ``metric`` barrier (``kind``) between the two children's final weights.
    kind, metric, split : str
    child_error : np.ndarray, shape (K, 2)
        Final error (or loss, for regression) of each child on ``split``.
    curves : tuple of InterpolationCurve
        The path between the children for each spawn step.
    seeds : tuple of int
    seconds : float
    """

    spawn_steps: np.ndarray
    barrier: np.ndarray
    kind: str
    metric: str
    split: str
    child_error: np.ndarray
    curves: tuple[InterpolationCurve, ...]
    seeds: tuple[int, ...]
    seconds: float = 0.0


def instability_analysis(
    spec: TrainSpec,
    spawn_steps: Sequence[int],
    *,
    seeds: Sequence[int] = (1, 2),
    dataset: zdata.Dataset | None = None,
    alphas: int | Sequence[float] = 25,
    kind: BarrierKind = "max_minus_mean",
    metric: str = "error",
    split: str = "test",
    bn: str = "running",
    on_progress: Callable[[int, int], None] | None = None,
) -> Instability:
    """Frankle et al.'s instability analysis for the run described by ``spec``.

    Parameters
    ----------
    spec : TrainSpec
        The parent run (architecture, data, optimiser, ``steps`` = end of training, ``seed``
        = the parent's init and data order).
    spawn_steps : sequence of int
        Steps ``k`` at which to fork, each in ``[0, spec.steps]``.
    seeds : sequence of int, default (1, 2)
        Data-order seeds of the two children (the same pair at every ``k``).
    dataset : Dataset, optional
        Preloaded data matching ``spec.dataset``.
    alphas : int or array-like
    kind : default "max_minus_mean"
        Frankle et al. define instability as the error barrier over the mean of the endpoints.
    metric : {"error", "loss"}
    split : {"train", "test"}
    bn : {"running", "reset"}, default "running"
        BatchNorm statistics along each path; "reset" recomputes them from the training set.
    on_progress : callable, optional
        ``(done, total)`` after every spawn step.

    Returns
    -------
    Instability
    """
    t0 = time.perf_counter()
    ks = sorted({int(k) for k in spawn_steps})
    if not ks or ks[0] < 0 or ks[-1] > spec.steps:
        raise ValueError(f"spawn steps must lie in [0, {spec.steps}] (the run's steps); got {list(spawn_steps)}")
    device = resolve_device(spec.device)
    ds = dataset if dataset is not None else zdata.load(spec.dataset)
    model = nets.build(spec.arch, ds.input_shape, ds.n_outputs, vocab_size=ds.vocab_size, seed=spec.seed).to(device)
    x, y = ds.x_train.to(device), ds.y_train.to(device)
    params = {k: p.detach().clone() for k, p in model.named_parameters()}
    parent = TrainState(params, {k: b.detach().clone() for k, b in model.named_buffers()},
                        init_optim_state(params, spec.optim.name))
    order = BatchOrder(len(x), spec.batch_size, spec.seed)
    eval_data = (ds.x_test, ds.y_test) if split == "test" else (ds.x_train, ds.y_train)
    eval_data = tuple(t.to(device) for t in eval_data)
    heights, errors, curves = [], [], []
    for i, k in enumerate(ks):
        train_steps(model, parent, x, y, spec, order, k - parent.step)
        a, b = (c.state_dict() for c in spawn(model, parent, x, y, spec, seeds=seeds))
        curve = interpolate(model.eval(), a, b, eval_data, alphas=alphas, bn=bn, bn_data=(x, y),
                            label=f"spawn at step {k}")
        values = curve.error if metric == "error" else curve.loss
        heights.append(barrier(curve, kind=kind, metric=metric).value)
        errors.append([values[0], values[-1]])
        curves.append(curve)
        if on_progress is not None:
            on_progress(i + 1, len(ks))
    return Instability(spawn_steps=np.asarray(ks), barrier=np.asarray(heights), kind=kind, metric=metric, split=split,
                       child_error=np.asarray(errors), curves=tuple(curves), seeds=tuple(seeds),
                       seconds=time.perf_counter() - t0)
