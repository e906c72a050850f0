"""41x41 loss surface on MNIST-1D: Zooscope against Li et al.'s loop and `loss-landscapes`.

Run: .venv/bin/python bench/landscape_surface.py [--res 41] [--n 4000] [--models mlp100,mlp512,cnn] [--threads 2 1]

Each thread count of ``--threads`` (default 2, then 1) is a full run in this process; the
summary at the end has one line per model and thread count.

All contenders run in this one process on the same model, data and filter-normalised
directions, and evaluate the same grid theta0 + a*d1 + b*d2 (a, b in [-1, 1]):

- zooscope surface: ``loss_surface_2d`` (strategy chosen by device; on a CPU a loop over
  points with the whole dataset as one batch, reusing the first layer along the plane);
- zooscope loop: ``evaluate_points`` on the stacked vectors (no first-layer reuse);
- with ``--extras``: zooscope vmap: ``evaluate_points(strategy="vmap", chunk=32)`` on a subset, extrapolated;
- Li et al. loop: the reference code's way (``set_weights`` writes ``p.data`` in place, then
  ``eval_loss`` runs a DataLoader with batch 128), written here after
  github.com/tomgoldstein/loss-landscape; timed on ``--li-rows`` grid rows, extrapolated;
- loss-landscapes: ``planar_interpolation`` (same loop as its ``random_plane``) on the
  whole grid, whole dataset as one batch.

Prints medians, ratios, max |loss difference| and the fraction of the machine's measured
2048^2 matmul FLOP/s reached (model FLOPs per point x points / time).
"""

from __future__ import annotations

import argparse
import copy
import os
import time

import landscape_common as common
import numpy as np
import torch
from torch import nn

from engine.config import ArchSpec
from engine.nets import build
from engine.probes.core import ParamLayout, evaluate_points
from engine.probes.landscape import loss_surface_2d, random_direction

MODELS = {
    "mlp100": ArchSpec(name="mlp", width=100, depth=2),
    "mlp512": ArchSpec(name="mlp", width=512, depth=2),
    "cnn": ArchSpec(name="cnn1d", width=32, depth=3),
}


def li_style(model, params, d1, d2, coords, x, y):
    """Li et al.'s loop: in-place weights, DataLoader batch 128, loss.item() per batch."""
    net = copy.deepcopy(model).eval()
    weights = [params[n].detach().clone() for n, _ in net.named_parameters()]
    dx = [d1.params[n] for n, _ in net.named_parameters()]
    dy = [d2.params[n] for n, _ in net.named_parameters()]
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=128, shuffle=False)
    criterion = nn.CrossEntropyLoss()
    losses = []
    for a, b in coords.tolist():
        for p, w, u, v in zip(net.parameters(), weights, dx, dy):
            p.data = w + (u * a + v * b)
        total, correct, seen = 0.0, 0, 0
        with torch.no_grad():
            for inputs, targets in loader:
                out = net(inputs)
                total += criterion(out, targets).item() * len(inputs)
                correct += out.argmax(1).eq(targets).sum().item()
                seen += len(inputs)
        losses.append(total / seen)
    return np.asarray(losses)


def loss_landscapes_plane(model, theta0, d1, d2, res, x, y):
    """``loss_landscapes.planar_interpolation`` set up to walk our grid.

    It evaluates start + i*D1 + (j+1)*D2 on even columns i and start + i*D1 + j*D2 on odd
    ones (it walks back and forth in place), so with start shifted by -D2 its even
    columns are exactly our grid's columns.
    """
    import loss_landscapes
    from loss_landscapes.metrics import Loss

    h = 2.0 / (res - 1)
    start = theta0 - d1 - d2 - h * d2
    ends = start + res * h * d1, start + res * h * d2
    models = []
    for t in (start, *ends):
        m = copy.deepcopy(model).eval()
        torch.nn.utils.vector_to_parameters(t, m.parameters())
        models.append(m)
    metric = Loss(nn.CrossEntropyLoss(), x, y)
    return np.asarray(loss_landscapes.planar_interpolation(*models, metric, steps=res, deepcopy_model=True))


def bench_model(name, spec, x, y, args, dev, peak, out):
    model = build(spec, (1, 40), 10, seed=0).to(dev)
    params = {k: v.detach() for k, v in model.named_parameters()}
    layout = ParamLayout.from_module(model)
    d1, d2 = random_direction(params, seed=1), random_direction(params, seed=2)
    theta0, f1, f2 = layout.flatten(params), d1.flat(layout), d2.flat(layout)
    res = args.res
    axis = torch.linspace(-1, 1, res, device=dev)
    coords = torch.cartesian_prod(axis, axis)  # (res*res, 2), row-major like Surface.loss
    flops = common.forward_flops(model, x) * len(coords)
    out(f"\n## {name}: {spec.name} width={spec.width} depth={spec.depth}, P={layout.numel}, "
        f"N={len(x)}, grid {res}x{res}, {flops / len(coords) / 1e9:.3f} GFLOP per point")

    thetas = theta0 + coords[:, :1] * f1 + coords[:, 1:] * f2
    n_v = min(len(coords), args.vmap_points)
    n_li = min(len(coords), args.li_rows * res)
    fns = {"zooscope surface": lambda: loss_surface_2d(model, params, (x, y), d1, d2, resolution=res)}
    if torch.get_num_threads() > 1 and dev.type == "cpu":
        fns["zooscope surface, one point at a time"] = lambda: one_point_at_a_time(
            lambda: loss_surface_2d(model, params, (x, y), d1, d2, resolution=res))
    if args.extras:
        fns["zooscope loop (evaluate_points)"] = \
            lambda: evaluate_points(model, thetas, (x, y), strategy="loop")[0].numpy()
        fns[f"zooscope vmap chunk 32 ({n_v} pts, extrapolated)"] = \
            lambda: evaluate_points(model, thetas[:n_v], (x, y), strategy="vmap", chunk=32)[0].numpy()
    fns[f"Li et al. loop ({n_li} pts, extrapolated)"] = \
        lambda: li_style(model, params, d1, d2, coords[:n_li].cpu(), x, y)
    fns["loss-landscapes planar_interpolation"] = lambda: loss_landscapes_plane(model, theta0, f1, f2, res, x, y)[0::2]
    scale = {k: (len(coords) / n_v if "vmap" in k else len(coords) / n_li if k.startswith("Li") else 1.0) for k in fns}
    warm = max(1, min(4, len(coords)))  # first calls pay one-off costs (oneDNN kernels); not timed
    evaluate_points(model, thetas[:warm], (x, y), strategy="vmap", chunk=2)
    li_style(model, params, d1, d2, coords[:warm].cpu(), x, y)
    slow = [k for k in fns if k.startswith("Li" if args.repeat_refs else ("Li", "loss-l"))]
    times, cpu, results = common.rounds(fns, dev, args.repeats, skip_after_first=slow)
    surface = results["zooscope surface"]
    results["zooscope surface"] = ours = surface.loss.reshape(-1)
    for k in fns:
        if k.startswith("zooscope surface,") and not isinstance(results[k], Exception):
            results[k] = results[k].loss.reshape(-1)
    grid = surface.loss
    out(f"zooscope surface chose strategy {surface.strategy!r} (auto: measured on the first points)")
    rows = {}
    for label, value in results.items():
        if isinstance(value, Exception):
            out(f"{label} could not run: {type(value).__name__}: {value}")
            continue
        if label.startswith("loss-landscapes"):
            diff = float(np.abs(value - grid[0::2]).max())  # its even columns are our grid's
        else:
            diff = float(np.abs(value - ours[: len(value)]).max())
        rows[label] = (times[label] * scale[label], cpu[label] * scale[label], diff)
    t_zoo, c_zoo, _ = rows["zooscope surface"]
    peak_wall, peak_cpu = peak
    out(f"{'method':46s} {'wall s':>8s} {'cpu s':>8s} {'zooscope faster':>15s} {'(cpu)':>6s} {'GFLOP/s':>8s} "
        f"{'of peak':>7s} {'(cpu)':>6s} {'max|dloss|':>10s}")
    for label, (t, c, diff) in rows.items():
        out(f"{label:46s} {t:8.3f} {c:8.3f} {t / t_zoo:14.2f}x {c / c_zoo:5.2f}x {flops / t / 1e9:8.1f} "
            f"{flops / t / peak_wall:7.1%} {flops / c / peak_cpu:6.1%} {diff:10.2e}")
    return {label: (t, c) for label, (t, c, _) in rows.items()}, (t_zoo, c_zoo), flops


def one_point_at_a_time(fn):
    """``fn()`` with every point on the caller's thread (all its threads), not on workers."""
    before = os.environ.get("ZOOSCOPE_POINT_THREADS")
    os.environ["ZOOSCOPE_POINT_THREADS"] = "1"
    try:
        return fn()
    finally:
        if before is None:
            del os.environ["ZOOSCOPE_POINT_THREADS"]
        else:
            os.environ["ZOOSCOPE_POINT_THREADS"] = before


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--res", type=int, default=41)
    parser.add_argument("--n", type=int, default=4000)
    parser.add_argument("--models", default="mlp100,mlp512,cnn")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--li-rows", type=int, default=4, help="grid rows timed for Li et al.'s loop")
    parser.add_argument("--vmap-points", type=int, default=64)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1],
                        help="torch thread counts, each a full run in this process (default: 2 then 1)")
    parser.add_argument("--extras", action="store_true", help="also time evaluate_points as a loop and as vmap")
    parser.add_argument("--repeat-refs", action="store_true",
                        help="run loss-landscapes in every round too (its median, like zooscope's), not once")
    args = parser.parse_args()
    dev = common.device()
    thread_counts = args.threads if dev.type == "cpu" else [torch.get_num_threads()]
    tag = "" if args.models == parser.get_default("models") else "_" + args.models.replace(",", "_")
    threads = "".join(f"_t{t}" for t in thread_counts)
    out = common.Report(f"landscape_surface_{dev.type}{tag}_{args.res}x{args.res}{threads}")
    x, y = common.mnist1d(args.n, dev)
    summary = []
    for t in thread_counts:
        torch.set_num_threads(t)
        peak = common.matmul_flops(dev)
        out(f"\n# Loss surface benchmark on {dev.type} ({torch.get_num_threads()} threads), torch {torch.__version__}, "
            f"{time.strftime('%Y-%m-%d %H:%M')}, load average {common.load_average()}; zooscope: medians of "
            f"{args.repeats} interleaved rounds, references: 1"
            + (" (loss-landscapes: median of every round)" if args.repeat_refs else ""))
        out(f"dense 2048^2 float32 matmul: {peak[0] / 1e9:.1f} GFLOP per wall second, {peak[1] / 1e9:.1f} per CPU "
            "second (median of 7); 'of peak' columns divide by these")
        for name in args.models.split(","):
            times, t_zoo, flops = bench_model(name, MODELS[name], x, y, args, dev, peak, out)
            summary.append((name, t, times, t_zoo, flops, peak))
        after = common.matmul_flops(dev)
        out(f"\ndense matmul re-measured at the end: {after[0] / 1e9:.1f} GFLOP per wall second, {after[1] / 1e9:.1f} "
            f"per CPU second; load average {common.load_average()} (a shared machine: wall times are noisy, CPU "
            "times less so)")
    out("\n## summary: zooscope surface (wall s, share of the matmul peak) and its speed-up "
        "(reference time / zooscope time; wall, then CPU)")
    for name, t, times, (tz, cz), flops, (peak_wall, _) in summary:
        parts = [f"{tz:7.2f} s {flops / tz / peak_wall:5.0%} of peak"]
        for ref in ("Li", "loss-landscapes"):
            key = next((k for k in times if k.startswith(ref)), None)
            if key is None:
                parts.append(f"vs {ref}: n/a")
                continue
            tr, cr = times[key]
            parts.append(f"vs {ref}: {tr / tz:5.1f}x wall, {cr / cz:5.1f}x cpu")
        out(f"{name:8s} {t} thr  " + "   ".join(parts))
    print(f"saved {out.save()}")


if __name__ == "__main__":
    main()
