"""The evaluator: how flat parameter vectors go through a model, chosen by measurement.

:class:`Evaluator` holds a model (architecture), its buffers and the data, and owns the two
knobs that decide the speed of :func:`engine.probes.core.point_eval.evaluate_points` and
:func:`engine.probes.core.plane_eval.evaluate_plane`; both were measured rather than
assumed:

- points: a Python loop over points, or ``vmap`` over chunks of points. On a GPU many
  small evaluations are latency-bound and ``vmap`` wins. On a CPU it depends on the
  machine's state, so it is timed on the first points of every call
  (:meth:`Evaluator.map_points`).
- data rows: on a CPU the data go in chunks whose activations stay near the caches
  (:meth:`Evaluator.choose_rows`); on a GPU the whole set is one batch.

The measurements behind the defaults are in ``bench/results/core_measurements.md``.
"""

from __future__ import annotations

import ctypes
import os
import sys
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from engine.probes.core.cpu_kernels import cross_entropy_and_accuracy, with_cpu_kernels
from engine.probes.core.functional import (
    BNMode,
    LossFn,
    ParamLayout,
    Strategy,
    default_loss,
    fast_default_loss,
    functional_module,
    resolve_data,
)
from engine.probes.core.point_parallel import (  # points on workers
    as_point_worker,
    best_seconds,
    parallel_loop,
    remember_choice,
    thread_module,
    timed,
)

__all__ = ["Evaluator", "PointProgress"]

#: ``progress(done, total)``: points evaluated so far, of all.
PointProgress = Callable[[int, int], None]

class Evaluator:
    """A model (architecture), its buffers and one batch of data, ready to evaluate flat vectors.

    The one place where evaluation is organised: the module in the requested BatchNorm mode
    (with the CPU kernels of :mod:`engine.probes.core.cpu_kernels` on a CPU), the data rows per
    forward pass (:meth:`choose_rows`), the points per ``vmap`` call
    (:meth:`points_per_call`) and the loop-or-``vmap`` strategy (:meth:`map_points`).
    :func:`~engine.probes.core.point_eval.evaluate_points`,
    :func:`~engine.probes.core.plane_eval.evaluate_plane`, the Hessian operator and the
    intrinsic-dimension fit build on it.

    On a CPU the data go through in chunks of ``rows`` rows whose activations stay near
    the caches; losses are recombined as sample-weighted means, so ``loss_fn`` must be a
    mean over samples (the default is). With ``bn="batch"`` the whole set is always one
    batch, since chunks would change the batch statistics.

    Parameters
    ----------
    model : nn.Module
        The architecture; its own parameter values are not used.
    data : pair, loader or Dataset-like
        See :func:`~engine.probes.core.functional.resolve_data`; everything runs on its device.
    layout : ParamLayout, optional
        Flat order of the vectors; ``ParamLayout.from_module(model)`` by default.
    buffers : dict, optional
        Buffers (BatchNorm running statistics); the model's by default.
    bn : {"running", "batch"}
        BatchNorm statistics (see :mod:`engine.probes.core.functional`).
    loss_fn : callable, optional
        ``loss_fn(outputs, targets) -> scalar mean loss``; ``default_loss`` by default.
    split : {"train", "test"}
        Split of a Dataset-like ``data``.
    rows : int, optional
        Data rows per forward pass; all by default (see :meth:`choose_rows`).
    cpu_kernels : bool
        Swap in :mod:`~engine.probes.core.cpu_kernels` on a CPU (faster forward passes). The
        Hessian operator, which only differentiates, leaves them out (the copy of the module
        they need cost 1.7 ms of a 25 ms top eigenvalue of the width-100 MNIST-1D MLP).
    """

    def __init__(self, model: nn.Module, data, *, layout: ParamLayout | None = None,
                 buffers: Mapping[str, Tensor] | None = None, bn: BNMode = "running",
                 loss_fn: LossFn | None = None, split: str = "train", rows: int | None = None,
                 cpu_kernels: bool = True):
        self.module = functional_module(model, bn)
        self.layout = layout or ParamLayout.from_module(model)
        self.buffers = dict(model.named_buffers()) if buffers is None else dict(buffers)
        self.x, self.y = resolve_data(data, split)
        self.device = self.x.device  # everything runs where the data lives
        if self.device.type == "cpu" and cpu_kernels:
            self.module = with_cpu_kernels(self.module, private=self.module is not model)
        if self.device.type == "cpu":
            _keep_freed_memory()
        self.buffers = {k: v.to(self.device) for k, v in self.buffers.items()}
        self.loss_fn = loss_fn or default_loss
        self.classification = not self.y.is_floating_point()
        self.bn = bn
        self.rows = len(self.x) if rows is None else max(1, min(int(rows), len(self.x)))

    def forward(self, params: dict[str, Tensor], x: Tensor) -> Tensor:
        return functional_call(thread_module(self.module), {**params, **self.buffers}, (x,))

    def score(self, out: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
        """Mean loss and accuracy of outputs ``out`` against targets ``y``."""
        if self.loss_fn is fast_default_loss and self.classification and out.ndim == 2 and not _batched(out):
            return cross_entropy_and_accuracy(out, y)
        loss = self.loss_fn(out, y)
        if not self.classification:
            return loss, torch.full_like(loss, float("nan"))
        return loss, (out.argmax(-1) == y).to(loss.dtype).mean()

    def chunked(self, outputs) -> tuple[Tensor, Tensor]:
        """Score ``outputs(lo, hi)`` (the model's outputs on rows lo:hi) over all rows.

        With :func:`~engine.probes.core.functional.fast_default_loss`, class logits are joined and
        scored once when all of them take at most :data:`SCORED_WHOLE_FLOATS`: a score is a handful
        of small operations, and scoring chunk by chunk (each with its weighting) cost 2.5-4% of a
        chunked MNIST-1D CNN point (``bench/results/core_measurements.md``). Otherwise (other
        losses, token logits, large outputs) each chunk is scored and the means are weighted by
        the chunk's rows. Either way the result is the mean over all rows up to float rounding.
        """
        n = len(self.x)
        if self.rows >= n:
            return self.score(outputs(0, n), self.y)
        bounds = [(lo, min(n, lo + self.rows)) for lo in range(0, n, self.rows)]
        first = outputs(*bounds[0])
        if (self.loss_fn is fast_default_loss and self.classification and first.ndim == 2 and not _batched(first)
                and n * first.shape[1] <= SCORED_WHOLE_FLOATS):
            return self.score(_joined([first, *(outputs(lo, hi) for lo, hi in bounds[1:])]), self.y)
        loss = acc = 0.0
        for k, (lo, hi) in enumerate(bounds):
            part_loss, part_acc = self.score(first if k == 0 else outputs(lo, hi), self.y[lo:hi])
            loss, acc = loss + part_loss * (hi - lo), acc + part_acc * (hi - lo)
        return loss / n, acc / n

    def point(self, theta: Tensor) -> tuple[Tensor, Tensor]:
        params = self.layout.unflatten(theta)
        return self.chunked(lambda lo, hi: self.forward(params, self.x[lo:hi]))

    def choose_rows(self, theta: Tensor, rows: int | None = None) -> int:
        """Set and return :attr:`rows`, the data rows per forward pass: ``rows`` if given;
        all on a GPU or with batch statistics; on a CPU, cache-sized chunks when they
        measure faster at the point ``theta`` (once per process and kind of model and data)."""
        self.rows = as_point_worker(lambda: _data_rows(self, theta, rows), device=self.device)  # as points run
        return self.rows

    def cache_sized_rows(self, theta: Tensor) -> int:
        """The cache-sized chunk :meth:`choose_rows` tries on a CPU: rows whose activations at
        ``theta`` come to about 2^22 values (16 MiB of float32), at least 256, at most all."""
        per_row = max(1, _activation_floats(self, theta) // (2 * len(self.x)))
        return int(min(len(self.x), max(_MIN_ROWS, _CHUNK_FLOATS // per_row)))

    def resolve_strategy(self, strategy: Strategy) -> str:
        """"loop", "vmap", or "measure" ("auto" on a CPU: both timed on the first points)."""
        return _pick_strategy(strategy, self.device)

    def activation_floats(self, theta: Tensor) -> int:
        """Rough size of one forward pass over all the data at ``theta``: twice the number of
        values the leaf modules output (one forward pass on one row, times the rows)."""
        return _activation_floats(self, theta)

    def points_per_call(self, theta: Tensor) -> int:
        """Points per ``vmap`` call: their activations fill about half the free GPU memory,
        or 512 MiB on a CPU (sized from one forward pass at ``theta``)."""
        return _auto_chunk(self, _activation_floats(self, theta))

    def map_points(self, fn_loop, fn_vmap, args: tuple[Tensor, ...], how: str,
                   chunk: int, progress: PointProgress | None = None) -> tuple[Tensor, Tensor, str]:
        """Apply a point function to every row of ``args``: ``fn_loop`` one point at a time,
        or ``fn_vmap`` under ``vmap`` in chunks of ``chunk`` points, as ``how`` (from
        :meth:`resolve_strategy`) says; "measure" times both on the first points and keeps
        the faster. ``progress(done, total)`` after every point (loop) or chunk of points
        (``vmap``); raise from it to stop. Returns ``(loss, acc, strategy used)``, float64 on the CPU.
        A loop runs its points on one-thread workers or on the caller's threads, whichever
        measured faster for this kind of model, data and point function
        (:func:`~engine.probes.core.point_parallel.parallel_map`), or on the workers without that
        measurement when ``fn_loop.on_workers`` is true (a point function that knows it is products and
        element-wise passes, :mod:`~engine.probes.core.mlp_plane`)."""
        key = None if getattr(fn_loop, "on_workers", False) else (
            self.kind(), getattr(fn_loop, "__qualname__", type(fn_loop).__name__))
        return _run(fn_loop, fn_vmap, args, how, chunk, progress, key)

    def kind(self) -> tuple:
        """What decides how fast a point runs: parameter and buffer shapes, data shape and type,
        rows per chunk, BatchNorm mode and thread count (a key for choices measured once)."""
        return (self.layout.shapes, tuple(sorted((k, tuple(v.shape)) for k, v in self.buffers.items())),
                tuple(self.x.shape), self.x.dtype, self.rows, self.bn, torch.get_num_threads())


#: Class logits joined and scored once (:meth:`Evaluator.chunked`) up to this many floats (16 MiB of float32).
SCORED_WHOLE_FLOATS = 1 << 22


def _joined(outs: list[Tensor]) -> Tensor:
    """The chunks' ``(n_c, C)`` outputs as one ``(N, C)``, class-major (a transposed ``(C, N)``) when
    they all are (as :class:`~engine.probes.core.cpu_kernels.NarrowLinear` gives them)."""
    if all(o.T.is_contiguous() for o in outs):
        return torch.cat([o.T for o in outs], dim=1).T
    return torch.cat(outs)


def _batched(t: Tensor) -> bool:
    """Whether ``t`` is a per-sample view inside ``vmap`` (where data-dependent branches are refused)."""
    return torch._C._functorch.is_batchedtensor(t)


_CHUNK_FLOATS = 2**22  # activations of one data chunk on a CPU (16 MiB of float32)
_MIN_ROWS = 256


_HEAP_TUNED = False


def _keep_freed_memory() -> None:
    """Let glibc keep freed blocks up to 64 MiB in the heap instead of returning them to the system.

    An evaluation loop allocates and frees the same few MB-sized activations at every
    point. glibc's default hands such blocks back to the kernel (``mmap``/heap trim) and the
    next point faults the pages in again, zero-filled, which made kernel time a large share of
    a CPU landscape (numbers in ``bench/results/core_measurements.md``).
    Process-wide and done once (on Linux with glibc); ``ZOOSCOPE_MALLOC=default`` opts out.
    Memory freed by the process stays reserved for its next allocations (up to 256 MiB at the
    heap's top before trimming).
    """
    global _HEAP_TUNED
    if _HEAP_TUNED or not sys.platform.startswith("linux") or os.environ.get("ZOOSCOPE_MALLOC") == "default":
        return
    _HEAP_TUNED = True
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    mallopt(m_mmap_threshold, 64 << 20)
    mallopt(m_trim_threshold, 256 << 20)


def _data_rows(ev: Evaluator, theta: Tensor, rows: int | None) -> int:
    """Rows per data chunk: ``rows`` if given; all on a GPU or with batch statistics;
    on a CPU, cache-sized chunks (about ``_CHUNK_FLOATS`` activation values, at least 256
    rows) when they measure faster than big batches (:func:`_measured_rows`), else all,
    in either case at most as many as keep the activations within :data:`EVAL_MEMORY_BYTES`.
    """
    n = len(ev.x)
    if rows is not None:
        return max(1, min(int(rows), n))
    if ev.device.type != "cpu" or ev.bn == "batch" or n <= _MIN_ROWS:
        return n
    per_row = max(1, _activation_floats(ev, theta) // (2 * n))
    small = ev.cache_sized_rows(theta)
    chosen = n if small >= n else _measured_rows(ev, theta, small)
    return max(1, min(chosen, EVAL_MEMORY_BYTES // (4 * per_row)))


#: Bound on the activations of one forward pass (the leaf modules' outputs summed) on a CPU:
#: a big model on many rows goes in chunks of at most this size, whatever was measured faster.
EVAL_MEMORY_BYTES = 512 * 2**20


#: Rows chosen per (model shapes, data shape, threads, chunk size), measured once per process (at most
#: point_parallel.CHOICES_KEPT of them).
_ROWS_CHOICE: dict[tuple, int] = {}


def _measured_rows(ev: Evaluator, theta: Tensor, small: int) -> int:
    """``small`` if forward passes over all the rows in chunks of ``small`` beat one batch of
    all the rows by 10% or more, else all rows. Measured with the point ``theta`` after a
    warm-up of each shape (the first call at a shape builds its kernels); about three forward
    passes over the data, once per process for each kind of model, data and thread count.

    Which wins depends on the machine (cache sizes, vector units): the same CNN ran faster in
    small chunks on one 2-core machine and slower on another (``bench/results/core_measurements.md``).
    It is timed on all the rows because that is what decides it: timed on the first ``4 * small``
    rows, one batch of 1,496 MNIST-1D rows looked as fast as chunks, while one batch of all 4,000
    wrote its 41 MB activations into fresh pages at every point (the BatchNorm CNN's 25-point
    interpolation: 1.63 s in one batch against 1.34-1.43 s in chunks, one thread).
    """
    n = len(ev.x)
    key = (ev.layout.shapes, tuple(sorted((k, tuple(v.shape)) for k, v in ev.buffers.items())),
           tuple(ev.x.shape), ev.x.dtype, torch.get_num_threads(), small)
    chosen = _ROWS_CHOICE.get(key)
    if chosen is None:
        params = ev.layout.unflatten(theta)
        with torch.no_grad():
            _forward_seconds(ev, params, small, small), _forward_seconds(ev, params, n, n)  # warm-up of each shape
            t_small, t_big = _forward_seconds(ev, params, n, small), _forward_seconds(ev, params, n, n)
        chosen = remember_choice(_ROWS_CHOICE, key, small if t_small < 0.9 * t_big else n)
    return chosen


def _forward_seconds(ev: Evaluator, params: dict[str, Tensor], m: int, rows: int) -> float:
    """Seconds to run the first ``m`` data rows through the model in chunks of ``rows``."""
    return best_seconds(lambda: [ev.forward(params, ev.x[lo : min(m, lo + rows)]) for lo in range(0, m, rows)])


def _pick_strategy(strategy: Strategy, device: torch.device) -> str:
    """"loop", "vmap", or "measure" (auto on a CPU: time both on the first points)."""
    if strategy not in ("auto", "loop", "vmap"):
        raise ValueError(f"strategy must be 'auto', 'loop' or 'vmap'; got {strategy!r}")
    if strategy == "auto":
        return "vmap" if device.type == "cuda" else "measure"
    return strategy


def _auto_chunk(ev: Evaluator, per_point_floats: int) -> int:
    """Points per ``vmap`` call: activations of a chunk fill about half the free GPU
    memory, or 512 MiB on a CPU. ``per_point_floats`` is for the whole dataset; only
    ``ev.rows`` rows are live at a time."""
    if ev.x.device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(ev.x.device)
        budget = free // 2
    else:
        budget = 512 * 2**20
    live = per_point_floats * ev.rows // max(1, len(ev.x))
    return max(1, min(1024, int(budget // max(1, 4 * live))))


def _activation_floats(ev: Evaluator, theta: Tensor) -> int:
    """Rough size of one point's forward pass: outputs of all leaf modules, times 2."""
    total = [0]

    def hook(_m, _i, out):
        if isinstance(out, Tensor):
            total[0] += out.numel()

    leaves = [m for m in ev.module.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            functional_call(ev.module, {**ev.layout.unflatten(theta), **ev.buffers}, (ev.x[:1],))
    finally:
        for h in handles:
            h.remove()
    return 2 * max(total[0], 1) * len(ev.x)


def _tell(progress: PointProgress | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def _loop(fn, args: tuple[Tensor, ...], lo: int, hi: int, progress=None, key=None) -> tuple[Tensor, Tensor]:
    return parallel_loop(fn, args, lo, hi, progress, key)  # on a CPU: one-thread workers or the caller, as measured


def _vmapped(fn, args: tuple[Tensor, ...], lo: int, hi: int, chunk: int, progress=None) -> tuple[Tensor, Tensor]:
    batched, out = vmap(fn), []
    for s in range(lo, hi, chunk):
        out.append(batched(*(a[s : min(s + chunk, hi)] for a in args)))
        _tell(progress, min(s + chunk, hi), len(args[0]))
    return torch.cat([o[0] for o in out]), torch.cat([o[1] for o in out])


_PROBE_FRACTION = 256  # each timed probe is at most 1/256 of the points (the slower strategy costs little)
#: Probes of each strategy, alternated, the shortest of each compared. With one, the width-100 MLP's 41 x 41
#: surface at 2 threads went to vmap in 1 of ~10 calls (4.1 s against 0.93-0.99 s for the loop).
_PROBES = 2


def _run(fn_loop, fn_vmap, args: tuple[Tensor, ...], how: str, chunk: int,
         progress: PointProgress | None = None, key: tuple | None = None) -> tuple[Tensor, Tensor, str]:
    """Apply a point function to every row of ``args``; returns ``(loss, acc, strategy used)``.

    ``how="measure"`` (the CPU default) times the loop and ``vmap`` on the first points
    (at most 1/256 of them each, at least 4; twice each, alternated, the shorter time of each
    compared) and keeps the faster for the rest. On quiet
    cores the loop over points, each on the whole dataset, runs the big products near the
    matmul peak and wins; with the cores oversubscribed by other processes the
    per-operation cost dominates and ``vmap`` (many times fewer operations) wins
    (``bench/results/core_measurements.md``). Every point is computed from its own
    coordinates either way, so the numbers agree to float rounding.
    """
    n = len(args[0])
    with torch.no_grad():
        if how == "measure":
            probe = min(chunk, max(4, n // _PROBE_FRACTION))
            if probe < 4 or n < 4 * _PROBES * probe:
                how = "loop"
            else:
                parts, t_loop, t_vmap = [], [], []
                for lo in range(0, _PROBES * 2 * probe, 2 * probe):  # alternated; the least disturbed of each
                    on_loop, seconds = timed(_loop, fn_loop, args, lo, lo + probe, progress, key)
                    t_loop.append(seconds)
                    on_vmap, seconds = timed(_vmapped, fn_vmap, args, lo + probe, lo + 2 * probe, probe, progress)
                    t_vmap.append(seconds)
                    parts += [on_loop, on_vmap]
                how = "loop" if min(t_loop) <= min(t_vmap) else "vmap"
                done = _PROBES * 2 * probe
                parts.append(_loop(fn_loop, args, done, n, progress, key) if how == "loop" else
                             _vmapped(fn_vmap, args, done, n, chunk, progress))
                return (torch.cat([p[0] for p in parts]).double().cpu(),
                        torch.cat([p[1] for p in parts]).double().cpu(), how)
        loss, acc = _loop(fn_loop, args, 0, n, progress, key) if how == "loop" else \
            _vmapped(fn_vmap, args, 0, n, chunk, progress)
    return loss.double().cpu(), acc.double().cpu(), how
