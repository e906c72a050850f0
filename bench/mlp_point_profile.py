"""Where a point of the width-100 MLP's 41x41 surface spends its time, inside real points.

Run: .venv/bin/python bench/mlp_point_profile.py [--n 4000] [--res 41] [--threads 1 2]

Builds the point function ``evaluate_plane`` uses for the MNIST-1D MLP 40 -> 100 -> 100 -> 10
(:func:`engine.probes.core.mlp_plane.mlp_plane_point`) and times, over the whole grid:

- the real point function, points on the caller's thread (1 thread) or on the one-thread point
  workers (``--threads 2``: two workers, the grid shared out as ``parallel_map`` does);
- an instrumented copy of the point, one clock read between its operations, each summed per thread,
  printed per point (at 2 threads: thread time per point, to set against the operations alone).

Also each operation alone, warm, called back to back (what ``surface_bound.py`` calls the floor).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import landscape_common as common
import torch
from landscape_surface import MODELS

from engine.nets import build
from engine.probes.core import ParamLayout
from engine.probes.core.evaluator import Evaluator
from engine.probes.core.mlp_plane import mlp_plane_point
from engine.probes.core.plane_eval import _first_layer
from engine.probes.core.point_parallel import parallel_map
from engine.probes.landscape import random_direction


def setup(n: int, res: int):
    x, y = common.mnist1d(n, torch.device("cpu"))
    model = build(MODELS["mlp100"], (1, 40), 10, seed=0)
    params = {k: v.detach() for k, v in model.named_parameters()}
    layout = ParamLayout.from_module(model)
    d1, d2 = random_direction(params, seed=1), random_direction(params, seed=2)
    theta0, f1, f2 = layout.flatten(params), d1.flat(layout), d2.flat(layout)
    axis = torch.linspace(-1, 1, res)
    coords = torch.cartesian_prod(axis, axis)
    from engine.probes.core.functional import fast_default_loss

    ev = Evaluator(model, (x, y), layout=layout, loss_fn=fast_default_loss)
    ev.choose_rows(theta0)
    first = _first_layer(ev, theta0, f1, f2, coords)
    zs = [first.output(layout.unflatten(t)) for t in (theta0, f1, f2)]
    point = mlp_plane_point(ev, first.path, theta0, f1, f2, zs, coords)
    return ev, point, coords


def run_points(point, coords, workers: int) -> float:
    items = [(coords[g, 0], coords[g, 1]) for g in range(len(coords))]
    start = time.perf_counter()
    if workers == 1:
        for it in items:
            point(*it)
    else:
        parallel_map(point, items)  # no key: straight to the workers
    return time.perf_counter() - start


def instrumented(ev, point, coords, workers: int) -> dict[str, float]:
    """A copy of the point's operations with a clock read between them: seconds per operation, summed
    over the threads (the ops of the width-100 MLP's chain, taken from the real point's closure)."""
    import torch.nn.functional as F

    from engine.probes.core.mlp_plane import _add_relu

    env = dict(zip(point.__code__.co_freevars, (c.cell_contents for c in point.__closure__)))
    row, zt, score = env["row"], env["zt"], env.get("score")
    y = ev.y
    spent: dict[str, float] = {}
    lock = threading.Lock()

    def one(ai, bi, mine):
        clock = time.perf_counter
        t0 = clock()
        b = float(bi)
        a = float(ai)
        t1 = clock()
        z_a = row.at(a)
        t2 = clock()
        p = row.point_params(b)
        t3 = clock()
        h = _add_relu(z_a, zt[2], b)
        t4 = clock()
        h2 = torch.mm(p["1.weight"], h)
        t5 = clock()
        h2.relu_()
        t6 = clock()
        logits = torch.addmm(p["3.bias"], p["3.weight"], h2)
        t7 = clock()
        if score is None:  # before the point scored its own logits
            loss = F.cross_entropy(logits[None], y[None])
            t8 = clock()
            pred = logits.max(0)[1]
            t9 = clock()
            acc = (pred == y).to(loss.dtype).mean()
        else:
            loss, acc = score(logits)
            t8 = t9 = clock()
        t10 = clock()
        for k, d in (("float(a), float(b)", t1 - t0), ("row cache (once a row)", t2 - t1),
                     ("point params (add, out=)", t3 - t2), ("first layer: _add_relu", t4 - t3),
                     ("hidden product mm", t5 - t4), ("relu_ after hidden", t6 - t5), ("head addmm", t7 - t6),
                     ("score" if score else "F.cross_entropy (1,C,N)", t8 - t7), ("max(0)", t9 - t8),
                     ("accuracy eq/to/mean", t10 - t9),
                     ("whole (instrumented)", t10 - t0)):
            mine[k] = mine.get(k, 0.0) + d
        return loss, acc

    items = [(coords[g, 0], coords[g, 1]) for g in range(len(coords))]

    def work(part):
        torch.set_num_threads(1) if workers > 1 else None
        mine: dict[str, float] = {}
        for it in part:
            one(*it, mine)
        with lock:
            for k, v in mine.items():
                spent[k] = spent.get(k, 0.0) + v

    if workers == 1:
        work(items)
    else:
        block = 16
        parts = [[] for _ in range(workers)]
        for i in range(0, len(items), block):
            parts[(i // block) % workers].extend(items[i : i + block])
        threads = [threading.Thread(target=work, args=(part,)) for part in parts]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    return {k: v / len(items) for k, v in spent.items()}


def alone(ev, point, reps: int = 300) -> dict[str, float]:
    """Each operation of the point alone, back to back, median seconds."""
    import torch.nn.functional as F

    from engine.probes.core.mlp_plane import _add_relu

    env = dict(zip(point.__code__.co_freevars, (c.cell_contents for c in point.__closure__)))
    row, zt, y = env["row"], env["zt"], ev.y
    z_a = row.at(0.3)
    p = row.point_params(-0.2)
    h = _add_relu(z_a, zt[2], -0.2)
    h2 = torch.mm(p["1.weight"], h).relu_()
    logits = torch.addmm(p["3.bias"], p["3.weight"], h2)
    ops = {"point params (add, out=)": lambda: row.point_params(-0.2),
           "first layer: _add_relu": lambda: _add_relu(z_a, zt[2], -0.2),
           "hidden product mm": lambda: torch.mm(p["1.weight"], h),
           "relu_ after hidden": lambda: h2.relu_(),
           "head addmm": lambda: torch.addmm(p["3.bias"], p["3.weight"], h2),
           "F.cross_entropy (1,C,N)": lambda: F.cross_entropy(logits[None], y[None]),
           "max(0)": lambda: logits.max(0)[1],
           "accuracy eq/to/mean": lambda: (logits.max(0)[1] == y).float().mean()}
    res = {}
    for k, fn in ops.items():
        for _ in range(20):
            fn()
        ts = []
        for _ in range(reps):
            s = time.perf_counter()
            fn()
            ts.append(time.perf_counter() - s)
        res[k] = statistics.median(ts)
    return res


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--res", type=int, default=41)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tag", default="")
    args = parser.parse_args()
    out = common.Report("mlp_point_profile" + (f"_{args.tag}" if args.tag else ""))
    torch.set_grad_enabled(False)
    for t in args.threads:
        torch.set_num_threads(t)
        ev, point, coords = setup(args.n, args.res)
        g = len(coords)
        out(f"\n# mlp100 point, N={args.n}, {g} points, torch {t} thread(s) (points on {t} one-thread worker(s) "
            f"when 2), rows per pass {ev.rows}, load average {common.load_average()}, {time.strftime('%H:%M')}")
        run_points(point, coords, t)
        times = [run_points(point, coords, t) for _ in range(args.repeats)]
        per = instrumented(ev, point, coords, t)
        per = instrumented(ev, point, coords, t)
        lone = alone(ev, point) if t == 1 else {}
        out(f"instrumented copy, thread time per point (sum over {t} thread(s); divide by {t} for wall):")
        for k, v in per.items():
            extra = f"   alone {lone[k] * 1e6:7.1f} us" if k in lone else ""
            out(f"  {k:34s} {v * 1e6:8.1f} us{extra}")
        out(f"real point function: median {statistics.median(times) / g * 1e6:.0f} us a point "
            f"(all {statistics.median(times):.3f} s; min {min(times) / g * 1e6:.0f})")
    print(f"saved {out.save()}")


if __name__ == "__main__":
    main()
