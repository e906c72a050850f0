"""Population training vs one run after another, same 32 runs, same process.

K=32 MLPs (40-64-64-10) on MNIST-1D with momentum SGD, each with its own seed and
learning rate. Throughput is sample-steps per second (runs x steps x batch / wall
time). Prints medians over repeats and the ratio; the README's table quotes it.

    .venv/bin/python bench/population_training.py [--k 32] [--steps 200] [--repeats 3] [--threads 2 1]
    .venv/bin/python bench/population_training.py --profile 50 --threads 1   # op shares, torch.profiler

On a CPU each thread count is a full run in this process (default 2, then 1).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from engine import data as zdata
from engine.config import ArchSpec, DatasetSpec, OptimSpec, TrainSpec
from engine.train import train_population, train_run


def specs(k: int, steps: int, width: int, device: str) -> list[TrainSpec]:
    return [TrainSpec(dataset=DatasetSpec(name="mnist1d"), arch=ArchSpec(name="mlp", width=width, depth=2),
                      optim=OptimSpec(name="momentum", lr=0.01 * (1 + i % 4)), batch_size=100, steps=steps,
                      seed=i, checkpoints=[steps], device=device) for i in range(k)]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--width", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1], help="torch thread counts (CPU)")
    ap.add_argument("--profile", type=int, default=0, metavar="STEPS",
                    help="print the op shares of one population run of STEPS steps (first thread count) and stop")
    args = ap.parse_args()
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if args.profile:
        torch.set_num_threads(args.threads[0])
        return profile(args, device)
    lines = []
    for threads in args.threads if device == "cpu" else [torch.get_num_threads()]:
        torch.set_num_threads(threads)
        lines += measure(args, device)
        print("\n".join(lines[-4:]), flush=True)
    suffix = "".join(f"_t{t}" for t in args.threads) if device == "cpu" else ""
    out = Path(__file__).parent / "results" / f"population_training_{device}{suffix}.txt"
    out.write_text("\n".join(lines) + "\n")


def measure(args, device: str) -> list[str]:
    runs = specs(args.k, args.steps, args.width, args.device)
    ds = {runs[0].dataset.to_json(): zdata.load(runs[0].dataset)}
    work = args.k * args.steps * 100
    warm = specs(args.k, 5, args.width, args.device)  # warm-up with the measured shapes, both ways
    train_population(warm, datasets=ds)
    train_run(warm[0], dataset=ds[warm[0].dataset.to_json()])
    seq, pop = [], []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        for s in runs:
            train_run(s, dataset=ds[s.dataset.to_json()])
        seq.append(work / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        train_population(runs, datasets=ds)
        pop.append(work / (time.perf_counter() - t0))
    s_med, p_med = statistics.median(seq), statistics.median(pop)
    return [
        f"population training: K={args.k} MLPs 40-{args.width}-{args.width}-10 on MNIST-1D, batch 100, "
        f"{args.steps} steps, device={device}, torch threads={torch.get_num_threads()}, repeats={args.repeats}",
        f"one after another (train_run): median {s_med:,.0f} sample-steps/s  (all: {[round(v) for v in seq]})",
        f"population (train_population): median {p_med:,.0f} sample-steps/s  (all: {[round(v) for v in pop]})",
        f"ratio population / sequential: {p_med / s_med:.1f}x  (target >= 4x on CPU)",
    ]


def profile(args, device: str) -> None:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    runs = specs(args.k, args.profile, args.width, args.device)
    ds = {runs[0].dataset.to_json(): zdata.load(runs[0].dataset)}
    train_population(specs(args.k, 5, args.width, args.device), datasets=ds)  # warm-up
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
    with torch_profile(activities=activities) as prof:
        train_population(runs, datasets=ds)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    print(f"train_population, K={args.k}, {args.profile} steps (with checkpoints at 0 and {args.profile}), "
          f"device={device}, torch threads={torch.get_num_threads()}: self CPU time {total / 1e3:.1f} ms")
    for e in sorted(events, key=lambda e: -e.self_cpu_time_total)[:20]:
        print(f"  {e.key:45s} {100 * e.self_cpu_time_total / total:5.1f}%  {e.count:5d} calls  "
              f"{e.self_cpu_time_total / max(e.count, 1):8.1f} us each")


if __name__ == "__main__":
    main()
