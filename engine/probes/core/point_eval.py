"""Many flat parameter vectors evaluated on the same data: the workhorse of every probe.

A 2D landscape, an interpolation path, a random subspace, a Rashomon sample are all "many
parameter vectors"; :func:`evaluate_points` gives their loss and accuracy, each point
computed from its own coordinates with :func:`torch.func.functional_call` (the module
passed in is never mutated). How the points go through the model (a loop or chunked
``vmap``, data rows per pass) is decided by :class:`~engine.probes.core.evaluator.Evaluator`.
Conventions for ``data``, the loss and ``bn`` are in :mod:`engine.probes.core.functional`.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from engine.probes.core.evaluator import Evaluator, PointProgress
from engine.probes.core.functional import BNMode, LossFn, ParamLayout, Strategy
from engine.probes.core.point_parallel import parallel_map

__all__ = ["evaluate_points", "points_with_buffers", "with_buffers"]


def evaluate_points(
    model: nn.Module,
    theta: Tensor,
    data,
    *,
    chunk: int | None = None,
    bn: BNMode = "running",
    buffers: Mapping[str, Tensor] | Sequence[Mapping[str, Tensor]] | None = None,
    layout: ParamLayout | None = None,
    loss_fn: LossFn | None = None,
    strategy: Strategy = "auto",
    split: str = "train",
    rows: int | None = None,
    progress: PointProgress | None = None,
) -> tuple[Tensor, Tensor]:
    """Loss and accuracy of many flat parameter vectors on the same data.

    Parameters
    ----------
    model : nn.Module
        The architecture; its own parameter values are not used.
    theta : Tensor, shape (G, P)
        One flat parameter vector per row, in ``layout`` order. Evaluation runs on the
        device of the data; ``theta`` and the buffers are moved there.
    data : pair, loader or Dataset-like
        See :func:`~engine.probes.core.functional.resolve_data`.
    chunk : int, optional
        Points per ``vmap`` call; by default sized to half the free GPU memory.
    bn : {"running", "batch"}
        BatchNorm statistics; see :mod:`engine.probes.core.functional`.
    buffers : dict or list of dicts, optional
        Buffers (BatchNorm running statistics) to use; the model's by default. A list
        gives each point its own (e.g. statistics interpolated along a path); those
        points run one after the other, sharing one prepared module.
    layout : ParamLayout, optional
        Flat order of ``theta``; ``ParamLayout.from_module(model)`` by default.
    loss_fn : callable, optional
        ``loss_fn(outputs, targets) -> scalar mean loss``;
        :func:`~engine.probes.core.functional.default_loss` by default.
    strategy : {"auto", "loop", "vmap"}
        "auto" uses chunked ``vmap`` on a GPU; on a CPU it times a loop over points and
        ``vmap`` on the first points and keeps the faster (see
        :class:`~engine.probes.core.evaluator.Evaluator`).
    split : {"train", "test"}
        Split of a Dataset-like ``data``.
    rows : int, optional
        Data rows per forward pass. By default all of them, except on a CPU, where the
        data go in cache-sized chunks (see :class:`~engine.probes.core.evaluator.Evaluator`);
        results are sample-weighted means either way.
    progress : callable, optional
        ``progress(done, total)`` after every point (or ``vmap`` chunk of points); an
        exception raised from it stops the evaluation.

    Returns
    -------
    loss, acc : Tensor, shape (G,)
        float64 on the CPU. ``acc`` is NaN for regression targets.
    """
    if theta.ndim != 2:
        raise ValueError(f"theta must have shape (G, P); got {tuple(theta.shape)}")
    per_point = buffers is not None and not isinstance(buffers, Mapping)
    if per_point and len(buffers) != len(theta):
        raise ValueError(f"got {len(buffers)} buffer dicts for {len(theta)} points")
    ev = Evaluator(model, data, layout=layout, buffers=buffers[0] if per_point else buffers, bn=bn,
                   loss_fn=loss_fn, split=split)
    theta = theta.to(ev.device)
    ev.choose_rows(theta[0], rows)
    if per_point:
        return points_with_buffers(ev, lambda mine, point: mine.point(point), [(t,) for t in theta], buffers,
                                   key=(ev.kind(), "points with buffers"), progress=progress)
    how = ev.resolve_strategy(strategy)
    chunk = chunk or (ev.points_per_call(theta[0]) if how != "loop" else 1)
    loss, acc, _ = ev.map_points(ev.point, ev.point, (theta,), how, chunk, progress)
    return loss, acc


def points_with_buffers(ev: Evaluator, fn: Callable[..., tuple[Tensor, Tensor]], items: Sequence[tuple],
                        buffers: Sequence[Mapping[str, Tensor]] | None, *, key: tuple,
                        progress: PointProgress | None = None) -> tuple[Tensor, Tensor]:
    """``fn(mine, *items[g])`` for every point ``g``, where ``mine`` evaluates with the point's own
    ``buffers[g]`` (``ev`` itself when there are none): the points side by side on one-thread
    workers on a CPU (:func:`~engine.probes.core.point_parallel.parallel_map` with ``key``).

    Returns (loss, acc), float64 on the CPU, one value per point.
    """
    if buffers is not None and len(buffers) != len(items):
        raise ValueError(f"got {len(buffers)} buffer dicts for {len(items)} points")

    def point(g: int) -> tuple[Tensor, Tensor]:
        return fn(ev if not buffers else with_buffers(ev, buffers[g]), *items[g])

    with torch.no_grad():
        out = parallel_map(point, [(g,) for g in range(len(items))], device=ev.device, progress=progress, key=key)
    return torch.stack([o[0] for o in out]).double().cpu(), torch.stack([o[1] for o in out]).double().cpu()


def with_buffers(ev: Evaluator, buffers: Mapping[str, Tensor]) -> Evaluator:
    """A shallow copy of ``ev`` evaluating with ``buffers`` (``ev`` itself is shared by threads)."""
    mine = copy.copy(ev)
    mine.buffers = {k: v.to(ev.device) for k, v in buffers.items()}
    return mine
