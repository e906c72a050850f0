"""Interpolation of 25 points between two models: Zooscope vs the per-point DataLoader loop.

Targets: >= 3x the per-point loop with DataLoader batches (the way the anchor papers'
code evaluates a path: for each alpha, ``load_state_dict`` the mixed weights into a
module and loop over a ``DataLoader``), and >= 70% of the machine's measured matmul
rate when compute-bound.

Cases, on the MNIST-1D training set (4000 samples), side by side in one process:

- ``mlp 3x512``: compute-bound (2 x 512^2 matmuls per sample); its achieved FLOP rate is
  compared with ``torch.mm`` timed on the same shapes (4000x512 @ 512x512);
- ``cnn1d w64 + BN``: BatchNorm with interpolated running statistics (one
  ``evaluate_points`` call per alpha, each alpha having its own buffers);
- ``mlp 2x64``: a typical small zoo member, where per-batch overhead dominates.

On a CPU the compute-bound case cannot reach 3x: the reference's batch-128 matrix
products already run at roughly half the machine's matmul rate, so the ratio is
bounded by about (our share of peak) / (its share of peak); the table shows both.

Zooscope runs ``interpolate`` with its automatic strategy (on a CPU a loop over points,
two at a time on one-thread workers when torch has 2 threads) and, for the record, with
``vmap`` and (at 2+ threads) with every point on the caller's thread
(``ZOOSCOPE_POINT_THREADS=1``). Prints medians,
ratios and the largest loss difference between the methods.

    .venv/bin/python bench/connectivity_interpolation.py [--threads 2 1] [--repeats 3] [--batch 128]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from engine.config import ArchSpec
from engine.data import load
from engine.nets import build
from engine.probes.connectivity import interpolate

ALPHAS = torch.linspace(0, 1, 25)


def loader_loop(model, a, b, x, y, batch_size):
    """The reference: per alpha, mix, load_state_dict, loop over DataLoader batches."""
    losses, errors = [], []
    loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=False)
    model.eval()
    for alpha in ALPHAS.tolist():
        model.load_state_dict({k: (1 - alpha) * a[k] + alpha * b[k] if a[k].is_floating_point() else a[k] for k in a})
        total, wrong = 0.0, 0
        with torch.no_grad():
            for xb, yb in loader:
                out = model(xb)
                total += F.cross_entropy(out, yb, reduction="sum").item()
                wrong += (out.argmax(-1) != yb).sum().item()
        losses.append(total / len(x))
        errors.append(wrong / len(x))
    return torch.tensor(losses), torch.tensor(errors)


def timed(fn, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def mlp_flops(n: int, sizes: list[int]) -> float:
    return 2.0 * n * sum(i * o for i, o in zip(sizes[:-1], sizes[1:]))


def matmul_rate(n: int, width: int, repeats: int) -> float:
    x, w = torch.randn(n, width), torch.randn(width, width)
    torch.mm(x, w)
    t, _ = timed(lambda: [torch.mm(x, w) for _ in range(10)], repeats)
    return 10 * 2.0 * n * width * width / t


def run_case(name, arch, ds, args, lines):
    model = build(arch, ds.input_shape, ds.n_outputs, seed=0).eval()
    if arch.options.get("batchnorm"):
        model.train()
        with torch.no_grad():
            model(ds.x_train[:512])
        model.eval()
    a = {k: v.clone() for k, v in model.state_dict().items()}
    b = {k: v.clone() for k, v in build(arch, ds.input_shape, ds.n_outputs, seed=1).state_dict().items()}
    x, y = ds.x_train, ds.y_train
    interpolate(model, a, b, (x[:64], y[:64]), alphas=3)  # warm-up
    interpolate(model, a, b, (x, y), alphas=3)  # the row-chunk choice is measured once per process and shape
    t_auto, curve = timed(lambda: interpolate(model, a, b, (x, y), alphas=25), args.repeats)
    t_vmap, vcurve = timed(lambda: interpolate(model, a, b, (x, y), alphas=25, strategy="vmap"), args.repeats)
    t_one = None
    if torch.get_num_threads() > 1:  # the points on the caller's thread with all its threads, not on workers
        os.environ["ZOOSCOPE_POINT_THREADS"] = "1"
        try:
            t_one, _ = timed(lambda: interpolate(model, a, b, (x, y), alphas=25), args.repeats)
        finally:
            del os.environ["ZOOSCOPE_POINT_THREADS"]
    ref_model = build(arch, ds.input_shape, ds.n_outputs, seed=0)
    t_ref, (ref_loss, ref_err) = timed(lambda: loader_loop(ref_model, a, b, x, y, args.batch), args.repeats)
    diff = max(abs(curve.loss - ref_loss.numpy()).max(), abs(vcurve.loss - ref_loss.numpy()).max())
    lines += [
        f"{name:<16} zooscope interpolate (auto: loop, measured chunks)   {t_auto * 1e3:9.1f} ms",
        f"{name:<16} zooscope interpolate (vmap, whole batch)             {t_vmap * 1e3:9.1f} ms",
        *([f"{name:<16} zooscope interpolate, one point at a time (no workers) {t_one * 1e3:9.1f} ms"]
          if t_one is not None else []),
        f"{name:<16} per-point DataLoader loop (batch {args.batch:<4})              {t_ref * 1e3:9.1f} ms",
        f"{name:<16} ratio loop / zooscope = {t_ref / t_auto:.2f}x (target >= 3x: "
        f"{'yes' if t_ref / t_auto >= 3 else 'NO'}); max |loss difference| {diff:.2e}",
    ]
    return t_auto


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1], help="torch thread counts to run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=128, help="DataLoader batch size of the reference")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "connectivity_interpolation.txt"))
    args = ap.parse_args()
    ds = load("mnist1d")
    n = len(ds.x_train)
    lines = [f"interpolation, 25 alphas, MNIST-1D train set ({n} samples); medians over {args.repeats} repeats; "
             f"{os.cpu_count()} CPUs (a shared machine: timings move with its load, ratios much less)"]
    shown = 0

    def show():
        nonlocal shown
        print("\n".join(lines[shown:]), flush=True)
        shown = len(lines)

    for threads in args.threads:
        torch.set_num_threads(threads)
        lines.append(f"-- torch threads {threads}; load average at start {os.getloadavg()[0]:.1f}")
        show()
        mlp = ArchSpec(name="mlp", width=512, depth=3)
        t_mlp = run_case("mlp 3x512", mlp, ds, args, lines)
        rate = matmul_rate(n, 512, args.repeats)
        achieved = 25 * mlp_flops(n, [40, 512, 512, 512, 10]) / t_mlp
        lines.append(f"{'mlp 3x512':<16} achieved {achieved / 1e9:.1f} GFLOP/s vs measured matmul rate "
                     f"{rate / 1e9:.1f} GFLOP/s ({n}x512 @ 512x512) = {100 * achieved / rate:.0f}% "
                     f"(target >= 70%: {'yes' if achieved >= 0.7 * rate else 'NO'})")
        show()
        cnn = ArchSpec(name="cnn1d", width=64, depth=3, options={"batchnorm": True})
        run_case("cnn1d w64 + BN", cnn, ds, args, lines)
        run_case("mlp 2x64", ArchSpec(name="mlp", width=64, depth=2), ds, args, lines)
        lines.append(f"-- load average at the end of the {threads}-thread run: {os.getloadavg()[0]:.1f}")
        show()
    text = "\n".join(lines)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
