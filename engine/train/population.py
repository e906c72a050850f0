"""Train K runs of one architecture at once with ``torch.func`` (stacked parameters + ``vmap``).

Each run keeps its own seed (initialisation and data order), data set (training-set
fraction, label noise) and optimiser hyperparameters; the arithmetic is the same as
:func:`engine.train.train_run`, so a run trained here matches it (tests check this).
"""

from __future__ import annotations

import copy
import math
import time
from collections import defaultdict

import torch
from torch import Tensor
from torch.func import stack_module_state

from engine import data as zdata
from engine import nets
from engine.config import TrainSpec

from .batches import BatchOrder
from .common import CheckpointCallback, ProgressCallback, RunResult, eval_subset, resolve_device
from .losses import stacked_accuracy, stacked_loss_fn
from .optim import init_optim_state, optim_step, stack_hparams
from .stacked import stacked_forward

__all__ = ["population_groups", "train_population"]


def _group_key(spec: TrainSpec) -> str:
    # init_scale only changes the initial values, so runs that differ in it still stack.
    shared = spec.model_dump(mode="json", include={"arch", "batch_size", "steps", "checkpoints", "eval_size", "device",
                                                  "loss"})
    shared["arch"].pop("init_scale")
    return f"{shared}|{spec.optim.name}"


def population_groups(specs: list[TrainSpec]) -> list[list[int]]:
    """Indices of ``specs`` that can train together (same architecture, batch size, schedule, optimiser, loss)."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(specs):
        groups[_group_key(s)].append(i)
    return list(groups.values())


def train_population(
    specs: list[TrainSpec],
    *,
    on_checkpoint: CheckpointCallback | None = None,
    on_progress: ProgressCallback | None = None,
    should_stop=None,
    datasets: dict[str, zdata.Dataset] | None = None,
) -> list[RunResult]:
    """Train every spec at once; they must share one population group (see :func:`population_groups`).

    A run whose loss becomes NaN/inf stops there (status ``diverged``) while the others go on.
    Callbacks are as in :func:`engine.train.train_run`, with ``run`` the index into ``specs``.
    """
    if not specs:
        raise ValueError("train_population: expected at least one spec, got 0")
    if len(population_groups(specs)) != 1:
        raise ValueError(
            "train_population: specs must share architecture, batch size, steps, checkpoint schedule, "
            "optimiser and loss; split them with population_groups(specs)"
        )
    t0 = time.perf_counter()
    first = specs[0]
    device = resolve_device(first.device)
    K = len(specs)
    cache = datasets if datasets is not None else {}  # shared across groups by the caller
    ds = []
    for s in specs:
        key = s.dataset.to_json()
        if key not in cache:
            cache[key] = zdata.load(s.dataset)
        ds.append(cache[key])
    tasks = {d.task for d in ds}
    if len(tasks) != 1:
        raise ValueError(f"train_population: the runs' data sets mix tasks {sorted(tasks)}; one loss needs one task. "
                         "Train them as separate populations")
    lossf = stacked_loss_fn(first.loss, ds[0].task)  # (K, B, ...) outputs -> (K,) losses
    by_data = _data_groups(specs, ds, device, first.eval_size)

    models = [nets.build(s.arch, ds[0].input_shape, ds[0].n_outputs, vocab_size=ds[0].vocab_size, seed=s.seed)
              for s in specs]
    base = _retie(models[0], copy.deepcopy(models[0]).to("meta"))
    forward = stacked_forward(base)
    stacked, buffers = stack_module_state(models)  # each (K, ...)
    flat = _FlatParams(stacked, device)
    params = flat.views(flat.tensors)  # the (K, ...) parameters, views into flat.tensors
    buffers = {k: v.to(device) for k, v in buffers.items()}
    hp = stack_hparams([s.optim for s in specs], device)
    state = init_optim_state(flat.tensors, first.optim.name)
    orders = [BatchOrder(len(d.x_train), s.batch_size, s.seed) for s, d in zip(specs, ds)]
    active = torch.ones(K, dtype=torch.bool, device=device)
    diverged: list[int | None] = [None] * K
    metrics: list[dict[str, float]] = [{} for _ in specs]
    ckpts = set(first.checkpoint_steps())
    report_every = max(1, min(first.steps // 100, 25))

    def checkpoint(step: int) -> None:
        evals = _evaluate(base, forward, params, buffers, by_data, lossf)
        for k in range(K):
            if diverged[k] is not None:
                continue
            metrics[k] = {name: float(v[k]) for name, v in evals.items()}
            if on_checkpoint is not None:
                state_k = {n: t[k].detach().cpu().clone() for n, t in {**params, **buffers}.items()}
                on_checkpoint(k, step, orders[k].epoch(step), state_k, metrics[k])

    checkpoint(0)
    status = "done"
    for step in range(1, first.steps + 1):
        xb, yb = _gather(by_data, orders, K)
        base.train()
        leaves = {dtype: t.detach().requires_grad_(True) for dtype, t in flat.tensors.items()}
        losses = lossf(forward(flat.views(leaves), buffers, xb), yb)  # (K,)
        grads = dict(zip(leaves, torch.autograd.grad(losses.sum(), list(leaves.values()))))  # each (K, P)
        finite = torch.isfinite(losses.detach())
        newly = active & ~finite
        if bool(newly.any()):
            for k in newly.nonzero().flatten().tolist():
                diverged[k] = step
            active &= finite
        optim_step(first.optim.name, flat.tensors, grads, state, hp, active=active)
        if step in ckpts:
            checkpoint(step)
        if step % report_every == 0 or step == first.steps:
            if on_progress is not None:
                on_progress(step, first.steps, losses.detach().cpu().tolist())
            if should_stop is not None and should_stop():
                status = "cancelled"
                break
        if not bool(active.any()):
            break
    wall = time.perf_counter() - t0
    return [
        RunResult(status="diverged", steps=diverged[k], diverged_step=diverged[k], metrics=metrics[k], wall_s=wall,
                  device=str(device))
        if diverged[k] is not None
        else RunResult(status=status, steps=step, diverged_step=None, metrics=metrics[k], wall_s=wall,
                       device=str(device))
        for k in range(K)
    ]


class _FlatParams:
    """The K runs' parameters as one ``(K, P)`` tensor per dtype, every named parameter a view into it.

    The optimiser then updates all parameters with a few element-wise passes over one tensor
    (not a dozen small ones per parameter), and autograd returns one ``(K, P)`` gradient.
    """

    def __init__(self, stacked: dict[str, Tensor], device: torch.device):
        self.shapes = {name: t.shape for name, t in stacked.items()}  # (K, ...)
        self.names: dict[str, list[str]] = defaultdict(list)  # dtype -> parameter names
        for name, t in stacked.items():
            self.names[str(t.dtype)].append(name)
        self.tensors = {
            dtype: torch.cat([stacked[n].detach().flatten(1) for n in names], dim=1).to(device)  # (K, P)
            for dtype, names in self.names.items()
        }

    def views(self, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
        """Named ``(K, ...)`` views into ``tensors`` (``self.tensors``, or leaves that share them)."""
        out = {}
        for dtype, names in self.names.items():
            sizes = [math.prod(self.shapes[n][1:]) for n in names]
            for n, part in zip(names, tensors[dtype].split(sizes, dim=1)):
                out[n] = part.view(self.shapes[n])
        return {n: out[n] for n in self.shapes}  # in the model's order


class _DataGroup:
    """Runs that share one data set: their batches come from one gather."""

    def __init__(self, runs: list[int], d: zdata.Dataset, device: torch.device, eval_size: int):
        self.runs = torch.tensor(runs, device=device)
        self.run_list = runs
        self.x, self.y = d.x_train.to(device), d.y_train.to(device)
        self.evals = {
            split: tuple(t.to(device) for t in eval_subset(xs, ys, eval_size))
            for split, xs, ys in (("train", d.x_train, d.y_train), ("test", d.x_test, d.y_test))
        }


def _data_groups(specs, ds, device, eval_size) -> list[_DataGroup]:
    groups: dict[str, list[int]] = defaultdict(list)
    for k, s in enumerate(specs):
        groups[s.dataset.to_json()].append(k)
    return [_DataGroup(runs, ds[runs[0]], device, eval_size) for runs in groups.values()]


def _retie(src: torch.nn.Module, dst: torch.nn.Module) -> torch.nn.Module:
    """``dst`` with the parameter sharing of ``src`` restored (``.to("meta")`` makes a new parameter per
    name, so GPT-2's ``lm_head.weight`` would no longer be ``transformer.wte.weight`` and, left out of
    the stacked parameters, would be read as uninitialised memory)."""
    first: dict[int, str] = {}
    for name, param in src.named_parameters(remove_duplicate=False):
        if id(param) not in first:
            first[id(param)] = name
            continue
        owner, _, attr = name.rpartition(".")
        setattr(dst.get_submodule(owner) if owner else dst, attr, dst.get_parameter(first[id(param)]))
    return dst


def _gather(groups: list[_DataGroup], orders: list[BatchOrder], K: int) -> tuple[Tensor, Tensor]:
    if len(groups) == 1:
        return _rows(groups[0], orders)
    parts = []
    for g in groups:
        parts.append((g.runs, *_rows(g, orders)))
    B = parts[0][1].shape[1]
    xb = parts[0][1].new_empty((K, B, *parts[0][1].shape[2:]))
    yb = parts[0][2].new_empty((K, B, *parts[0][2].shape[2:]))
    for runs, gx, gy in parts:
        xb[runs], yb[runs] = gx, gy
    return xb, yb


def _rows(g: _DataGroup, orders: list[BatchOrder]) -> tuple[Tensor, Tensor]:
    """The next batch of each run in ``g``: ``(k, B, ...)`` inputs and targets."""
    idx = torch.stack([orders[k].next() for k in g.run_list]).to(g.x.device)  # (k, B)
    # index_select, not x[idx]: advanced indexing of (N, 1, 40) rows takes 5x as long on a CPU
    pick = [t.index_select(0, idx.flatten()).view(*idx.shape, *t.shape[1:]) for t in (g.x, g.y)]
    return pick[0], pick[1]


# Samples per evaluation pass. The K runs' activations of a whole 2,048-sample subset are
# tens of MB in fresh memory; passes of 256 keep them in cache (one core, K=32 width-64 MLPs:
# 10 ms a pass over 2,048 samples against 18 ms in one piece).
_EVAL_CHUNK = 256


@torch.no_grad()
def _evaluate(base, forward, params, buffers, groups: list[_DataGroup], lossf) -> dict[str, Tensor]:
    """Per-run loss and accuracy on the fixed evaluation subsets: name -> (K,) tensor."""
    base.eval()
    K = next(iter(params.values())).shape[0]
    out: dict[str, Tensor] = {}
    for g in groups:
        p = {k: v[g.runs] for k, v in params.items()}
        b = {k: v[g.runs] for k, v in buffers.items()}
        for split, (xs, ys) in g.evals.items():
            ce, acc = _scores(forward, p, b, xs, ys, lossf)
            for name, v in ((f"{split}_loss", ce), (f"{split}_acc", acc)):
                out.setdefault(name, torch.full((K,), math.nan, device=ce.device))[g.runs] = v
    return out


def _scores(forward, p, b, xs: Tensor, ys: Tensor, lossf) -> tuple[Tensor, Tensor]:
    """Loss and accuracy (NaN for regression) of each run on ``(xs, ys)``, shared by the runs: two (k,)."""
    k, n = next(iter(p.values())).shape[0], len(xs)
    ce, acc = 0.0, 0.0
    for lo in range(0, n, _EVAL_CHUNK):
        x, y = xs[lo : lo + _EVAL_CHUNK], ys[lo : lo + _EVAL_CHUNK]
        y = y.expand(k, *y.shape)
        logits = forward(p, b, x.expand(k, *x.shape))  # (k, m, C...)
        share = len(x) / n  # every loss and accuracy is a mean over samples (tokens)
        ce = ce + lossf(logits, y) * share  # (k,)
        if not ys.is_floating_point():  # per sample, or per token for sequences
            acc = acc + stacked_accuracy(logits, y) * share
    return ce, (torch.full_like(ce, math.nan) if ys.is_floating_point() else acc)
