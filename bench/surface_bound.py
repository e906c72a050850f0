"""A measured floor for a point of the width-100 MLP's 41x41 loss surface, and the ratio it allows.

Run: .venv/bin/python bench/surface_bound.py [--n 4000] [--res 41] [--threads 2 1] [--tag NAME]

A point of the surface of the MNIST-1D MLP 40 -> 100 -> 100 -> 10 (4,000 samples) needs at least:

- one pass that forms the first layer's output at the point, ``relu(Z_a + b * Z2)`` over the kept
  outputs (the cheapest exact way found: recomputing the 40 -> 100 layer measured no faster);
- the hidden 100 x 101 product (bias as a weight column) over all samples;
- the 10 x 100 head over all samples;
- the loss and accuracy of the (10, N) logits.

Each is timed alone here on the model's own tensors, warm, in the fastest layout measured (row- or
feature-major; the fastest loss formulation), best of and median of many calls. At 2 threads an
operation's time is the smaller of (a) one call on two OpenMP threads and (b) two one-thread
threads running it side by side, per call (how Zooscope's point workers run). Their sum is the
floor: what a point costs with nothing else (no ReLU after the hidden product, no cold caches,
no per-operation overhead beyond each operation's own). It is printed next to Zooscope's point
time and ``loss-landscapes``' (each the 41 x 41 surface's time over its points, measured in this
run), and ``loss-landscapes``' point time over the floor is the largest speed-up any method
running these operations could reach on this machine.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import landscape_common as common
import torch
from landscape_surface import MODELS, loss_landscapes_plane
from torch import nn

from engine.nets import build
from engine.probes.core import ParamLayout
from engine.probes.core.cpu_kernels import cross_entropy_and_accuracy
from engine.probes.landscape import loss_surface_2d, random_direction


def timed_alone(fn, reps: int) -> tuple[float, float]:
    """(best, median) seconds of ``fn()`` on this thread, after a warm-up."""
    for _ in range(max(3, reps // 10)):
        fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)


def timed_side_by_side(fn, reps: int, workers: int, rounds: int = 7) -> tuple[float, float]:
    """(best, median) over ``rounds`` of the wall time of ``workers`` one-thread threads each
    calling ``fn()`` ``reps`` times at once, per call. The workers read the clock themselves:
    at real-time priority on two cores the waiting main thread is not run until they block."""
    per_call = []
    for _ in range(rounds):
        barrier, spans = threading.Barrier(workers), []

        def work(barrier=barrier, spans=spans):
            torch.set_num_threads(1)
            fn()
            barrier.wait()
            start = time.perf_counter()
            for _ in range(reps):
                fn()
            spans.append((start, time.perf_counter()))

        threads = [threading.Thread(target=work) for _ in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = max(end for _, end in spans) - min(start for start, _ in spans)
        per_call.append(wall / (workers * reps))
    return min(per_call), statistics.median(per_call)


def shared_max_score(logits, y):
    """Loss and exact first-argmax accuracy of (C, N) logits with finite maxima from one ``amax``:
    ``e = logits - top`` is 0 exactly at each column's maxima, and the first of them is argmax's
    class (the fastest formulation timed alone; Zooscope's is faster inside a point)."""
    top = logits.amax(0)
    e = logits - top
    loss = (e.exp().sum(0).log_() - e.gather(0, y[None])[0]).mean()
    classes = logits.shape[0]
    first = torch.arange(classes, 0, -1, dtype=e.dtype)[:, None]
    pred = classes - e.sign_().add_(1).mul_(first).amax(0)
    return loss, (pred == y).to(loss.dtype).mean()


def operations(model, params, d1, d2, layout, x, y) -> dict[str, list]:
    """Each irreducible operation of a point, in every layout tried: {name: [(layout, fn), ...]}."""
    theta0, f1, f2 = layout.flatten(params), d1.flat(layout), d2.flat(layout)
    a, b = 0.35, -0.6
    p = layout.unflatten(theta0 + a * f1 + b * f2)
    first = model.layers[0].linear
    with torch.no_grad():
        zs = [nn.functional.linear(x.flatten(1), q["layers.0.linear.weight"], q["layers.0.linear.bias"])
              for q in (layout.unflatten(t) for t in (theta0, f1, f2))]
    ones = torch.ones(len(x), 1)
    za = torch.cat([zs[0] + a * zs[1], ones], 1)  # (N, 101): bias as a weight column
    z2 = torch.cat([zs[2], 0 * ones], 1)
    zat, z2t = za.T.contiguous(), z2.T.contiguous()  # (101, N)
    w2 = torch.cat([p["layers.1.linear.weight"], p["layers.1.linear.bias"][:, None]], 1)  # (100, 101)
    z, zt = torch.add(za, z2, alpha=b).relu_(), torch.add(zat, z2t, alpha=b).relu_()
    h, ht = torch.mm(z, w2.T).relu_(), torch.mm(w2, zt).relu_()
    w3, b3 = p["head.weight"], p["head.bias"]
    logits_t = torch.addmm(b3[:, None], w3, ht)  # (10, N)
    add_relu = getattr(torch.ops.aten, "_add_relu", None)
    assert first.in_features == 40 and w2.shape == (100, 101)
    return {
        "first layer: relu(z_a + b Z2), one pass": [
            ("row-major, add + relu", lambda: torch.add(za, z2, alpha=b).relu_()),
            ("feature-major, fused", lambda: add_relu(zat, z2t, alpha=b)),
        ],
        "hidden product 100 x 101": [
            ("row-major z @ W^T", lambda: torch.mm(z, w2.T)),
            ("feature-major W @ z", lambda: torch.mm(w2, zt)),
        ],
        "head 10 x 100 (+ bias)": [
            ("row-major, transposed", lambda: torch.addmm(b3[:, None], w3, h.T)),
            ("feature-major", lambda: torch.addmm(b3[:, None], w3, ht)),
        ],
        "loss + accuracy": [
            ("class-major, Zooscope's", lambda: cross_entropy_and_accuracy(logits_t.T, y)),
            ("class-major, one shared max", lambda: shared_max_score(logits_t, y)),
        ],
        "(not in the floor) cross-entropy alone": [
            ("class-major (1, C, N)", lambda: nn.functional.cross_entropy(logits_t[None], y[None])),
        ],
        "(not in the floor) ReLU after the hidden product": [
            ("feature-major, in place", lambda: ht.relu_()),
        ],
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--res", type=int, default=41)
    parser.add_argument("--reps", type=int, default=300)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    parser.add_argument("--tag", default="", help="suffix of the results file name")
    args = parser.parse_args()
    dev = torch.device("cpu")
    out = common.Report(f"surface_bound_{args.res}x{args.res}" + "".join(f"_t{t}" for t in args.threads)
                        + (f"_{args.tag}" if args.tag else ""))
    x, y = common.mnist1d(args.n, dev)
    model = build(MODELS["mlp100"], (1, 40), 10, seed=0)
    params = {k: v.detach() for k, v in model.named_parameters()}
    layout = ParamLayout.from_module(model)
    d1, d2 = random_direction(params, seed=1), random_direction(params, seed=2)
    points = args.res**2
    torch.set_grad_enabled(False)
    for t in args.threads:
        torch.set_num_threads(t)
        out(f"\n# mlp100, N={args.n}, {t} thread(s), torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}, "
            f"load average {common.load_average()}; best / median of {args.reps} calls (2 threads: the better of "
            "one call on two OpenMP threads and two one-thread threads side by side, per call)")
        floor_best = floor_med = 0.0
        for name, ways in operations(model, params, d1, d2, layout, x, y).items():
            rows = []
            for label, fn in ways:
                best, med = timed_alone(fn, args.reps)
                if t > 1:
                    side = timed_side_by_side(fn, args.reps // 4, t)
                    label, best, med = (label + ", side by side", *side) if side[1] < med else (label, best, med)
                rows.append((med, best, label))
                out(f"  {name:48s} {label:44s} best {best * 1e6:7.1f} us   median {med * 1e6:7.1f} us")
            med, best, label = min(rows)
            if not name.startswith("(not"):
                floor_best, floor_med = floor_best + best, floor_med + med
        with torch.enable_grad():
            surface_times = []
            for _ in range(3):
                start = time.perf_counter()
                loss_surface_2d(model, params, (x, y), d1, d2, resolution=args.res)
                surface_times.append(time.perf_counter() - start)
            theta0, f1, f2 = layout.flatten(params), d1.flat(layout), d2.flat(layout)
            start = time.perf_counter()
            loss_landscapes_plane(model, theta0, f1, f2, args.res, x, y)
            t_ll = time.perf_counter() - start
        t_zoo = statistics.median(surface_times)
        out(f"floor (sum of the fastest way of each): best {floor_best * 1e6:.0f} us, median {floor_med * 1e6:.0f} us "
            "a point")
        out(f"Zooscope surface: {t_zoo:.3f} s (median of 3) = {t_zoo / points * 1e6:.0f} us a point "
            f"({t_zoo / points / floor_med:.2f}x the median floor)")
        out(f"loss-landscapes:  {t_ll:.3f} s = {t_ll / points * 1e6:.0f} us a point; Zooscope is {t_ll / t_zoo:.2f}x "
            f"faster; the floor caps any method at {t_ll / points / floor_med:.2f}x (median) / "
            f"{t_ll / points / floor_best:.2f}x (best)")
    print(f"saved {out.save()}")


if __name__ == "__main__":
    main()
