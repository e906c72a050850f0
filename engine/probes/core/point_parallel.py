"""Several points evaluated at once on a CPU, each on one thread.

The operations of one point of a landscape or a path are small (a ``(4000, 100) x (100, 100)``
product, a ReLU over 400k values). Run with two OpenMP threads, each one pays a fork and a
join, and on a shared machine a descheduled thread stalls the other at every join: with the
load average at 13 on the 2-core development machine, a point of the width-100 MLP took
31 CPU-ms at two threads and 1.45 CPU-ms as one of two points run side by side on one thread
each (``bench/results/core_measurements.md``). Here the points of a loop are handed to ``N``
worker threads (``N`` = the caller's torch thread count), each running torch single-threaded
on its own points; torch releases the GIL inside its operators, so the workers run in
parallel. Every point is still computed alone from its own coordinates, so the values equal
the one-thread loop's up to the rounding of a product computed with another blocking.

Thread safety. ``functional_call`` swaps a module's tensors in while it runs, so a worker
evaluates through its own shallow copy of every module (:func:`thread_module`, tensors
shared); grad mode is thread-local in torch and the caller's is carried to the workers.

Thread counts. ``torch.set_num_threads`` sets the calling thread's OpenMP and MKL thread
counts, which are per-thread settings, and also a process-wide default that threads starting
to use torch later pick up. The workers are started once per process and pool size and set
one thread each; the caller's value is put back as the default right after, so other threads
(a server's script threads) keep theirs.

``ZOOSCOPE_POINT_THREADS=1`` turns this off (every point on the caller's thread with its
thread count, as before); another integer sets the number of workers.

Measured, not assumed. Workers win for matrix products and element-wise work (the width-100
MLP's surface), but on the MNIST-1D CNN with BatchNorm a point on one of two one-thread workers
cost more CPU than on the caller's two OpenMP threads (oneDNN's convolutions), and a 25-point
interpolation took 870 ms on workers against 770 ms on the caller. So a loop given a ``key``
(the kind of model, data and point function) times its first points both ways, once per
process and key, and keeps the faster (:func:`parallel_map`).
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait

import torch
from torch import Tensor, nn

from engine.probes.core.functional import shallow_copy

__all__ = ["CHOICES_KEPT", "as_point_worker", "best_seconds", "parallel_loop", "parallel_map", "point_workers",
           "remember_choice", "thread_module", "timed"]

_LOCAL = threading.local()
_POOLS: dict[int, ThreadPoolExecutor] = {}
_POOLS_LOCK = threading.Lock()
#: "workers" or "caller" per (key, workers, caller threads), measured once per process.
_WHERE: dict[tuple, str] = {}
#: Measured choices kept per cache (this one, the evaluator's rows, the plane's combining): keys hold a model's
#: parameter shapes, and a server probing model after model of new architectures would add one per kind for
#: ever. Past this many the oldest is dropped: measuring it again costs a few points.
CHOICES_KEPT = 256
_CALLER_TIMED = 2  # points timed on the caller (after one untimed, whose kernels may be cold)
_WORKER_TIMED = 4  # points timed per worker (after one untimed each)


def remember_choice(cache: dict, key, value):
    """``cache[key] = value``, dropping the oldest entries past :data:`CHOICES_KEPT`; returns ``value``."""
    while len(cache) >= CHOICES_KEPT:
        try:
            cache.pop(next(iter(cache)), None)
        except (StopIteration, RuntimeError):  # emptied or changed by another thread meanwhile
            break
    cache[key] = value
    return value


def timed(fn: Callable, *args):
    """``(fn(*args), seconds it took)``: the one clock behind every measured choice of this package."""
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def best_seconds(fn: Callable, repeats: int = 1) -> float:
    """The shortest of ``repeats`` timed calls of ``fn()`` (the least disturbed by other work)."""
    return min(timed(fn)[1] for _ in range(repeats))


def _in_worker() -> bool:
    return getattr(_LOCAL, "worker", False)


def point_workers(device: torch.device | str = "cpu", n_points: int | None = None) -> int:
    """Worker threads a loop over ``n_points`` points would use: 1 on a GPU, inside a
    worker, or for fewer than 2 points; else ``ZOOSCOPE_POINT_THREADS`` if set, else the
    calling thread's torch thread count."""
    if torch.device(device).type != "cpu" or _in_worker() or (n_points is not None and n_points < 2):
        return 1
    env = os.environ.get("ZOOSCOPE_POINT_THREADS", "").strip()
    if env:
        try:
            wanted = int(env)
        except ValueError:
            raise ValueError(f"ZOOSCOPE_POINT_THREADS must be a positive integer; got {env[:40]!r}") from None
        if wanted < 1:
            raise ValueError(f"ZOOSCOPE_POINT_THREADS must be a positive integer; got {env[:40]!r}")
    else:
        wanted = torch.get_num_threads()
    return max(1, wanted if n_points is None else min(wanted, n_points))


def thread_module(module: nn.Module) -> nn.Module:
    """``module`` on the caller's own thread; in a worker, that worker's shallow copy of it
    (made once, shares every tensor), so that concurrent ``functional_call`` s never swap
    tensors in the same module object."""
    if not _in_worker():
        return module
    copies = getattr(_LOCAL, "copies", None)
    if copies is None:
        copies = _LOCAL.copies = weakref.WeakKeyDictionary()
    mine = copies.get(module)
    if mine is None:
        mine = copies[module] = shallow_copy(module)
    return mine


def _start_worker(barrier: threading.Barrier) -> None:
    torch.set_num_threads(1)  # this thread's OpenMP/MKL count (and, for a moment, the default)
    _LOCAL.worker = True
    barrier.wait()


def _pool(n: int) -> ThreadPoolExecutor:
    """A pool of ``n`` started workers, each running torch on one thread."""
    with _POOLS_LOCK:
        pool = _POOLS.get(n)
        if pool is None:
            saved = torch.get_num_threads()
            pool = ThreadPoolExecutor(n, thread_name_prefix="zooscope-points")
            barrier = threading.Barrier(n)  # each submit starts a thread, as none is idle
            try:
                for f in [pool.submit(_start_worker, barrier) for _ in range(n)]:
                    f.result()
            except BaseException:  # an interrupt while they start: no half-started pool is kept
                barrier.abort()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
            finally:
                torch.set_num_threads(saved)  # the process default back, whatever happened; the workers keep 1
            _POOLS[n] = pool
        return pool


def parallel_map(fn: Callable, items: Sequence, *, device: torch.device | str = "cpu",
                 progress: Callable[[int, int], None] | None = None, key: tuple | None = None) -> list:
    """``[fn(*item) for item in items]``, the items shared out among :func:`point_workers`
    threads (in order; the first exception raised is re-raised).

    With a ``key`` (what the items are: the model, data and point function) and workers to
    share out to, the first loop of each key in a process times its first points both ways,
    one untimed and :data:`_CALLER_TIMED` on the caller's thread (with its thread count), then
    one untimed and :data:`_WORKER_TIMED` per worker on the workers (timed from the first point's
    start to the last one's end, see :func:`_timed_call`), and the rest of this loop and every later loop of that key
    go the faster way. Every item is still computed alone, either way. The workers get one
    untimed point each first, as the caller does: a thread's first point at a shape pays for its
    kernels' set-up (it made a width-64 MLP's 25-point interpolation look faster on the caller).

    ``progress(done, total)`` is called after every item, one call at a time (under a lock);
    an exception it raises (a cancelled job) stops every worker after its current item. A point
    function with a ``batch`` attribute gets the items of a worker's block (at most
    :data:`BATCH_ITEMS`, consecutive) in one call, ``fn.batch(items) == [fn(*item) for item in
    items]``; progress is then told after the block.
    """
    items = list(items)
    workers = point_workers(device, len(items))
    if workers == 1:
        return _on_caller(fn, items, 0, len(items), progress, len(items))
    where_key = None if key is None else (key, workers, torch.get_num_threads())
    where = _WHERE.get(where_key) if where_key is not None else "workers"
    if where == "caller":
        return _on_caller(fn, items, 0, len(items), progress, len(items))
    if where == "workers":
        return _on_workers(fn, items, 0, len(items), workers, progress)
    first, warm = 1 + _CALLER_TIMED, 1 + _CALLER_TIMED + workers
    rest_lo = warm + _WORKER_TIMED * workers
    if len(items) <= rest_lo:  # too few to time: workers, as before this was measured
        return _on_workers(fn, items, 0, len(items), workers, progress)
    out = _on_caller(fn, items, 0, 1, progress, len(items))  # untimed: the caller's kernels warm up
    on_caller, t_caller = timed(_on_caller, fn, items, 1, first, progress, len(items))
    per_caller = t_caller / _CALLER_TIMED
    out += on_caller + _on_workers(fn, items, first, warm, workers, progress)  # untimed: the workers' warm-up
    spans: list = []
    out += _on_workers(lambda *item: _timed_call(fn, item, spans), items, warm, rest_lo, workers, progress)
    per_workers = (max(end for _, end in spans) - min(start for start, _ in spans)) / (rest_lo - warm)
    where = remember_choice(_WHERE, where_key, "workers" if per_workers <= per_caller else "caller")
    if where == "caller":
        return out + _on_caller(fn, items, rest_lo, len(items), progress, len(items))
    return out + _on_workers(fn, items, rest_lo, len(items), workers, progress)


def _timed_call(fn: Callable, item: tuple, spans: list):
    """``fn(*item)``, its start and end appended to ``spans``: the workers' timing is from their first
    point's start to their last point's end, without the hand-over to the pool. Handing over once per
    loop is nothing against a loop; against the few points timed it was not (a 1,681-point width-100
    MLP surface went to the caller, 1.31 s, when on workers it took 1.13 s: two points timed on each
    of two workers took 3.7 ms where each point took 1.1-1.7 ms)."""
    start = time.perf_counter()
    result, seconds = timed(fn, *item)
    spans.append((start, start + seconds))
    return result


#: Most items a point function's ``batch`` gets at once (:func:`_on_caller`, :func:`_on_workers`).
BATCH_ITEMS = 16


def _on_caller(fn: Callable, items: list, lo: int, hi: int, progress, total: int) -> list:
    out = []
    batch = getattr(fn, "batch", None)
    step = BATCH_ITEMS if batch is not None else 1
    for i in range(lo, hi, step):
        j = min(hi, i + step)
        out += batch(items[i:j]) if batch is not None else [fn(*items[i])]
        if progress is not None:
            for done in range(i + 1, j + 1):
                progress(done, total)
    return out


def _on_workers(fn: Callable, items: list, lo: int, hi: int, workers: int, progress) -> list:
    """``fn(*item)`` for items ``lo:hi`` on ``workers`` one-thread workers, in order."""
    n = hi - lo
    if n <= 0:
        return []
    grad, caller_threads, reset = torch.is_grad_enabled(), torch.get_num_threads(), []
    results: list = [None] * n
    block = max(1, min(BATCH_ITEMS, n // (4 * workers)))  # small blocks even out a stolen core
    batch = getattr(fn, "batch", None)  # a point function that runs a block of items in one call
    starts = iter(range(0, n, block))
    lock, stop = threading.Lock(), threading.Event()
    done = [lo]

    def tell(k: int) -> None:
        for _ in range(k if progress is not None else 0):
            with lock:
                done[0] += 1
                progress(done[0], len(items))

    def work() -> None:
        if torch.get_num_threads() != 1:  # seen in a long test session: a worker back at the default
            torch.set_num_threads(1)
            reset.append(True)
        with torch.set_grad_enabled(grad):
            while not stop.is_set():
                with lock:
                    start = next(starts, None)
                if start is None:
                    return
                end = min(start + block, n)
                try:
                    if batch is not None:  # the whole block in one call
                        if stop.is_set():
                            return
                        results[start:end] = batch(items[lo + start : lo + end])
                        tell(end - start)
                        continue
                    for i in range(start, end):
                        if stop.is_set():
                            return
                        results[i] = fn(*items[lo + i])
                        tell(1)
                except BaseException:
                    stop.set()
                    raise

    futures: list = []
    try:
        pool = _pool(workers)
        for _ in range(workers):
            futures.append(pool.submit(work))
        for f in futures:
            f.result()
    except BaseException:  # a worker's error, or an interrupt here: no point runs once this loop has raised
        stop.set()
        wait(futures)
        raise
    finally:
        if reset:  # setting a worker's count also set the process default: the caller's back, as _pool does
            torch.set_num_threads(caller_threads)
    return results


def as_point_worker(fn: Callable, *, device: torch.device | str = "cpu"):
    """``fn()`` run the way a loop's points will run: on a one-thread worker when loops on
    ``device`` go to workers, else here. For measurements that choose how a point is computed
    (the data rows per pass): at 2 threads whole batches won on the BatchNorm CNN of the
    interpolation benchmark, while on the one-thread workers 374-row chunks took 66 against
    107 CPU-ms per point."""
    workers = point_workers(device)
    if workers == 1:
        return fn()
    grad, caller_threads, reset = torch.is_grad_enabled(), torch.get_num_threads(), []

    def work():
        if torch.get_num_threads() != 1:
            torch.set_num_threads(1)
            reset.append(True)
        with torch.set_grad_enabled(grad):
            return fn()

    try:
        return _pool(workers).submit(work).result()
    finally:
        if reset:
            torch.set_num_threads(caller_threads)


def parallel_loop(fn: Callable, args: tuple[Tensor, ...], lo: int, hi: int,
                  progress: Callable[[int, int], None] | None = None,
                  key: tuple | None = None) -> tuple[Tensor, Tensor]:
    """``fn(*(a[g] for a in args))`` for points ``g`` in ``lo:hi``, which returns
    ``(loss, acc)``; stacked in point order. Points go in small contiguous blocks, so a point
    function that reuses work along a row (the plane's row cache) still mostly does.
    ``progress(done, total)`` counts points of all of ``args`` (``lo`` already done); ``key`` as
    in :func:`parallel_map`."""
    total = len(args[0])
    tell = None if progress is None else (lambda done, _n: progress(lo + done, total))
    out = parallel_map(fn, [tuple(a[g] for a in args) for g in range(lo, hi)], device=args[0].device, progress=tell,
                       key=key)
    return torch.stack([o[0] for o in out]), torch.stack([o[1] for o in out])
