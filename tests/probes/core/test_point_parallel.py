"""Points on worker threads (engine/probes/core/point_parallel.py) give the one-thread loop's values.

Tolerance: a worker computes each point with the same operations as the caller's loop, only
its products may be blocked differently (another thread count), which reorders float32 sums.
A logit is a sum of at most 36 products here, so it moves by at most ~36 * 2**-24 of the sum
of the magnitudes of its terms (< 1e-5 for these O(1) activations); the mean loss moves by
about as much. We allow 1e-5 * (1 + |loss|). Accuracy changes only if a logit near-tie flips:
at most one sample in these small sets, hence 1/N.
"""

import threading

import pytest
import torch
from torch import nn

from engine.probes.core import evaluate_plane, evaluate_points
from engine.probes.core.point_parallel import (
    as_point_worker,
    parallel_loop,
    parallel_map,
    point_workers,
    thread_module,
)


def _mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(36, 24), nn.ReLU(), nn.Linear(24, 24), nn.ReLU(), nn.Linear(24, 3))


def _cnn(bn: bool):
    torch.manual_seed(1)
    layers = [nn.Conv1d(1, 8, 3, padding=1), *([nn.BatchNorm1d(8)] if bn else []), nn.ReLU(), nn.MaxPool1d(2),
              nn.Conv1d(8, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 18, 3)]
    model = nn.Sequential(*layers)
    if bn:
        model.train()
        with torch.no_grad():
            model(torch.randn(64, 1, 36))
        model.eval()
    return model


def _data(n=300, shape=(1, 36)):
    g = torch.Generator().manual_seed(2)
    return torch.randn(n, *shape, generator=g), torch.randint(0, 3, (n,), generator=g)


def _close(a, b, n):
    (la, aa), (lb, ab) = a, b
    assert torch.all((la - lb).abs() <= 1e-5 * (1 + lb.abs())), (la - lb).abs().max()
    assert torch.all((aa - ab).abs() <= 1.0 / n + 1e-12)


def _flat(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


@pytest.mark.parametrize("make", [_mlp, lambda: _cnn(False)], ids=["mlp", "cnn"])
def test_plane_on_workers_equals_one_thread_loop(monkeypatch, make):
    model, (x, y) = make(), _data()
    theta0 = _flat(model)
    g = torch.Generator().manual_seed(3)
    d1, d2 = torch.randn(theta0.shape, generator=g) * 0.1, torch.randn(theta0.shape, generator=g) * 0.1
    axis = torch.linspace(-1, 1, 7)
    coords = torch.cartesian_prod(axis, axis)  # 49 points in rows of 7: the row cache is used per thread
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "1")
    one = evaluate_plane(model, theta0, d1, d2, coords, (x, y), strategy="loop")
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "2")
    two = evaluate_plane(model, theta0, d1, d2, coords, (x, y), strategy="loop")
    _close(two, one, len(x))
    # and each point equals its own vector's evaluation, in order (a mix-up of points would show)
    thetas = theta0 + coords[:, :1] * d1 + coords[:, 1:] * d2
    direct = evaluate_points(model, thetas, (x, y), strategy="loop")
    _close(two, direct, len(x))
    assert len(set(two[0].tolist())) > 40  # distinct values, so the order check means something


def test_points_with_own_batchnorm_buffers_on_workers(monkeypatch):
    model, (x, y) = _cnn(True), _data()
    theta = _flat(model)
    thetas = torch.stack([theta * (1 + 0.05 * k) for k in range(9)])
    base = {k: v for k, v in model.named_buffers()}
    buffers = [{k: v * (1 + 0.1 * k_) if v.is_floating_point() else v for k, v in base.items()} for k_ in range(9)]
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "1")
    one = evaluate_points(model, thetas, (x, y), buffers=buffers)
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "2")
    two = evaluate_points(model, thetas, (x, y), buffers=buffers)
    _close(two, one, len(x))
    # each point used its own buffers: the loop over single points with one dict each agrees
    each = [evaluate_points(model, t[None], (x, y), buffers=b) for t, b in zip(thetas, buffers)]
    _close(two, (torch.cat([e[0] for e in each]), torch.cat([e[1] for e in each])), len(x))


def test_caller_thread_count_and_default_are_kept(monkeypatch):
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "2")
    before = torch.get_num_threads()
    parallel_map(lambda i: torch.get_num_threads(), [(i,) for i in range(8)])
    assert torch.get_num_threads() == before
    seen = []
    t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))  # a thread started afterwards
    t.start()
    t.join()
    assert seen == [before]


def test_workers_run_one_thread_each_with_the_callers_grad_mode(monkeypatch):
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "2")
    with torch.no_grad():
        out = parallel_map(lambda i: (torch.get_num_threads(), torch.is_grad_enabled()), [(i,) for i in range(8)])
    assert out == [(1, False)] * 8


def test_results_come_back_in_point_order(monkeypatch):
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "2")
    a = torch.arange(37.0)
    loss, acc = parallel_loop(lambda v: (v * 2, v + 1), (a,), 3, 37)
    assert torch.equal(loss, a[3:] * 2) and torch.equal(acc, a[3:] + 1)


def test_a_worker_error_reaches_the_caller(monkeypatch):
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "2")

    def bad(i):
        if i == 5:
            raise ValueError(f"point {i} failed")
        return i

    with pytest.raises(ValueError, match="point 5 failed"):
        parallel_map(bad, [(i,) for i in range(10)])


def test_each_worker_has_its_own_module_copy_sharing_tensors(monkeypatch):
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "2")
    model = _mlp()
    assert thread_module(model) is model  # the caller's thread uses the module itself
    copies = parallel_map(lambda i: thread_module(model), [(i,) for i in range(8)])
    assert all(c is not model for c in copies)
    assert len({id(c) for c in copies}) <= 2  # one per worker, made once
    assert all(c[1].weight is model[1].weight for c in copies)


def test_worker_count(monkeypatch):
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "3")
    assert point_workers("cpu", 10) == 3
    assert point_workers("cpu", 2) == 2
    assert point_workers("cpu", 1) == 1
    assert point_workers("meta", 10) == 1  # only CPU loops are shared out
    monkeypatch.delenv("ZOOSCOPE_POINT_THREADS")
    assert point_workers("cpu", 100) == torch.get_num_threads()
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "two")
    with pytest.raises(ValueError, match="ZOOSCOPE_POINT_THREADS must be a positive integer; got 'two'"):
        point_workers("cpu", 10)
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "0")
    with pytest.raises(ValueError, match="positive integer; got '0'"):
        point_workers("cpu", 10)


def test_measurements_run_where_the_points_will(monkeypatch):
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "2")
    assert as_point_worker(torch.get_num_threads) == 1  # on a one-thread worker, as the loop's points
    with torch.no_grad():
        assert as_point_worker(torch.is_grad_enabled) is False
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "1")
    assert as_point_worker(threading.get_ident) == threading.get_ident()  # no workers: right here


@pytest.mark.parametrize("workers", ["1", "2"])
def test_progress_counts_every_point_once_in_order_and_a_raise_stops_the_workers(monkeypatch, workers):
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", workers)
    seen = []
    a = torch.arange(40.0)
    parallel_loop(lambda v: (v, v), (a,), 4, 40, progress=lambda done, total: seen.append((done, total)))
    assert seen == [(d, 40) for d in range(5, 41)]  # the 4 points before lo count as done

    ran = []

    def cancel(done, total):
        if done == 6:
            raise KeyboardInterrupt("cancelled")  # what a cancelled job's progress raises, in spirit

    with pytest.raises(KeyboardInterrupt, match="cancelled"):
        parallel_map(lambda i: ran.append(i), [(i,) for i in range(400)], progress=cancel)
    assert len(ran) < 400  # the workers stopped after their current point


def test_a_worker_found_at_another_thread_count_is_set_back_to_one_and_the_default_kept(monkeypatch):
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "2")
    before = torch.get_num_threads()
    parallel_map(lambda i: torch.set_num_threads(3), [(i,) for i in range(4)])  # something in a point changes it
    assert parallel_map(lambda i: torch.get_num_threads(), [(i,) for i in range(8)]) == [1] * 8
    assert as_point_worker(torch.get_num_threads) == 1
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("slow_on", ["workers", "caller"])
def test_a_keyed_loop_goes_where_its_first_points_ran_faster(monkeypatch, slow_on):
    """The first loop of a key times 2 points on the caller (after one untimed) and 4 per worker
    on the workers (after one untimed each), then runs the rest, and every later loop of that key, the faster way; the
    results and the progress are those of the plain loop either way."""
    from engine.probes.core import point_parallel

    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "2")
    monkeypatch.setattr(point_parallel, "_WHERE", {})
    where = []

    def point(i):
        on_worker = point_parallel._in_worker()
        where.append("workers" if on_worker else "caller")
        if (slow_on == "workers") == on_worker:
            threading.Event().wait(0.02)  # sleeps release the GIL, like torch's operators
        return i * i

    seen = []
    out = parallel_map(point, [(i,) for i in range(20)], key=("model", "point"),
                       progress=lambda done, total: seen.append((done, total)))
    assert out == [i * i for i in range(20)]
    assert sorted(seen) == [(d, 20) for d in range(1, 21)]
    fast = "caller" if slow_on == "workers" else "workers"
    on_caller, on_workers = 1 + point_parallel._CALLER_TIMED, 2 * (1 + point_parallel._WORKER_TIMED)
    assert (on_caller, on_workers) == (3, 10)
    assert where[:3] == ["caller"] * 3 and where[3:13] == ["workers"] * 10  # warm-up and timed points
    assert set(where[13:]) == {fast}  # the rest where it measured faster
    where.clear()
    parallel_map(point, [(i,) for i in range(10)], key=("model", "point"))
    assert set(where) == {fast}  # a later loop of the key: no second measurement
    where.clear()
    parallel_map(point, [(i,) for i in range(10)])  # no key: workers, as before
    assert set(where) == {"workers"}


def test_an_interrupt_while_waiting_stops_the_workers_before_it_propagates(monkeypatch):
    """Ctrl-C in the caller (a CLI probe) while the workers run: they stop after their current point,
    and nothing of the loop runs once the KeyboardInterrupt has reached the caller."""
    from engine.probes.core import point_parallel

    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "2")
    lock, running, calls, started = threading.Lock(), [0], [0], threading.Event()
    pool = point_parallel._pool(2)

    class Interrupted:  # the pool, whose futures' result() is where the caller waits: Ctrl-C lands there
        def submit(self, fn):
            future = pool.submit(fn)

            def result(timeout=None):
                started.wait()
                raise KeyboardInterrupt

            future.result = result
            return future

    monkeypatch.setattr(point_parallel, "_pool", lambda n: Interrupted())

    def point(i):
        with lock:
            running[0] += 1
            calls[0] += 1
        try:
            started.set()
            threading.Event().wait(0.3)
        finally:
            with lock:
                running[0] -= 1

    with pytest.raises(KeyboardInterrupt):
        parallel_map(point, [(i,) for i in range(40)])
    assert running[0] == 0, f"{running[0]} points still running after the interrupt"
    assert calls[0] < 40


def test_workers_that_fail_to_start_leave_the_default_thread_count(monkeypatch):
    from engine.probes.core import point_parallel

    def fails(barrier):
        torch.set_num_threads(1)  # what a starting worker does first, which also sets the default
        raise RuntimeError("no thread for you")

    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "3")
    monkeypatch.setattr(point_parallel, "_POOLS", {})
    monkeypatch.setattr(point_parallel, "_start_worker", fails)
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        with pytest.raises(RuntimeError, match="no thread for you"):
            parallel_map(lambda i: i, [(i,) for i in range(8)])
        seen = []
        t = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))  # a thread started afterwards
        t.start()
        t.join()
        assert seen == [3] and torch.get_num_threads() == 3 and point_parallel._POOLS == {}
    finally:
        torch.set_num_threads(before)


def test_measured_choices_are_kept_for_a_bounded_number_of_kinds(monkeypatch):
    """A server probing model after model of new shapes measures each kind once, but keeps at most
    CHOICES_KEPT choices per cache, the newest; a dropped kind is measured again when it comes back."""
    from engine.probes.core import evaluator, plane_eval, point_parallel

    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "2")
    monkeypatch.setattr(point_parallel, "_WHERE", {})
    monkeypatch.setattr(point_parallel, "CHOICES_KEPT", 4)
    for kind in range(10):
        assert parallel_map(lambda i: i + 1, [(i,) for i in range(16)], key=("model", kind)) == list(range(1, 17))
    assert [k[0] for k in point_parallel._WHERE] == [("model", kind) for kind in range(6, 10)]
    for cache in ({}, evaluator._ROWS_CHOICE, plane_eval._COMBINE_CHOICE):  # the same helper fills all three
        monkeypatch.setattr(point_parallel, "CHOICES_KEPT", len(cache) + 2)
        for kind in range(5):
            assert point_parallel.remember_choice(cache, ("test kind", kind), kind) == kind
        assert len(cache) <= point_parallel.CHOICES_KEPT and cache[("test kind", 4)] == 4
        for kind in range(5):
            cache.pop(("test kind", kind), None)


class _Blocked:
    """A point function that also runs blocks of points (``batch``), recording the blocks."""

    def __init__(self):
        self.blocks, self.lock = [], threading.Lock()

    def __call__(self, i):
        return (i * 2, i + 1)

    def batch(self, items):
        with self.lock:
            self.blocks.append([i for (i,) in items])
        return [self(*item) for item in items]


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_point_function_with_batch_gets_consecutive_blocks_and_progress_counts_each_point(monkeypatch, workers):
    from engine.probes.core.point_parallel import BATCH_ITEMS

    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", workers)
    fn, seen = _Blocked(), []
    out = parallel_map(fn, [(i,) for i in range(100)], progress=lambda done, total: seen.append((done, total)))
    assert out == [fn(i) for i in range(100)]
    assert all(len(b) <= BATCH_ITEMS and b == list(range(b[0], b[0] + len(b))) for b in fn.blocks)
    assert sorted(i for b in fn.blocks for i in b) == list(range(100))  # each point once
    assert seen == [(d, 100) for d in range(1, 101)]

    def cancel(done, total):
        if done >= 20:
            raise KeyboardInterrupt("cancelled")

    fn = _Blocked()
    with pytest.raises(KeyboardInterrupt, match="cancelled"):
        parallel_map(fn, [(i,) for i in range(4000)], progress=cancel)
    assert sum(len(b) for b in fn.blocks) < 4000  # the workers stopped after their current block
