"""What ``engine.tracking`` costs a training loop: ``run.log`` every step, and ``run.checkpoint``.

1. Logging. A K=1 MLP (the default ``mlp``: width 64, depth 2) trained with plain
   ``torch.optim.SGD`` on MNIST-1D, batch 128 — the smallest step Zooscope trains.
   Blocks of ``--block`` steps alternate between a loop without ``run.log`` and the same
   loop with ``run.log(step, train_loss=..., train_acc=...)`` every step (both read
   ``loss.item()``: a script needs the number either way). Per-step wall times: the
   median (the typical step) and the mean (which includes the bundles written every
   ``flush_every_s``), at 2 threads and at 1. Target: overhead <= 2 %.
2. Checkpoints. ``run.checkpoint(model, step)`` against the write it cannot avoid:
   ``safetensors.torch.save_file`` of the same state_dict to a file, fsynced (the store
   fsyncs, so a crash never leaves a half file). Weights change between rounds, so every
   checkpoint is a new artifact. Two costs: what the loop waits for (the check and a copy
   of the weights; the background writer does the rest) and the whole write until the
   bundle is in the inbox (``run.flush(wait=True)`` after it), each round started idle.

    .venv/bin/python bench/tracking_overhead.py [--steps 3000] [--block 250] [--ckpt-repeat 10]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from engine import data as zdata  # noqa: E402
from engine import nets  # noqa: E402
from engine.config import ArchSpec  # noqa: E402
from engine.tracking import start_run  # noqa: E402


def _setup(width: int, depth: int, seed: int = 0):
    ds = zdata.load("mnist1d")
    model = nets.build(ArchSpec(name="mlp", width=width, depth=depth), ds.input_shape, ds.n_outputs, seed=seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return ds, model, opt


def _loop(ds, model, opt, steps: int, start: int, run, batch: int, gen: torch.Generator) -> list[float]:
    """Per-step wall times of ``steps`` training steps (``run`` None: no logging)."""
    times = []
    n = len(ds.x_train)
    for step in range(start, start + steps):
        t0 = time.perf_counter()
        idx = torch.randint(0, n, (batch,), generator=gen)
        x, y = ds.x_train[idx], ds.y_train[idx]
        opt.zero_grad(set_to_none=True)
        out = model(x)
        loss = F.cross_entropy(out, y)
        loss.backward()
        opt.step()
        value = loss.item()
        if run is not None:
            run.log(step, train_loss=value, train_acc=0.5)
        times.append(time.perf_counter() - t0)
    return times


def logging_overhead(store_path: Path, threads: int, steps: int, block: int, batch: int) -> dict[str, float]:
    torch.set_num_threads(threads)
    ds, model, opt = _setup(64, 2)
    gen = torch.Generator().manual_seed(0)
    _loop(ds, model, opt, 200, 0, None, batch, gen)  # warm-up
    plain: list[float] = []
    logged: list[float] = []
    paired: list[float] = []  # per adjacent pair of blocks: robust to the machine's load drifting
    with start_run(store_path, zoo="bench", name=f"overhead-t{threads}", arch="mlp", dataset="mnist1d",
                   config={"threads": threads}) as run:
        step = 0
        while len(plain) < steps:
            a = _loop(ds, model, opt, block, step, None, batch, gen)
            step += block
            b = _loop(ds, model, opt, block, step, run, batch, gen)
            step += block
            plain, logged = plain + a, logged + b
            paired.append(statistics.median(b) / statistics.median(a))
    med_p, med_l = statistics.median(plain), statistics.median(logged)
    mean_p, mean_l = statistics.fmean(plain), statistics.fmean(logged)
    return {"threads": threads, "median_plain_us": med_p * 1e6, "median_logged_us": med_l * 1e6,
            "median_ratio": med_l / med_p, "mean_plain_us": mean_p * 1e6, "mean_logged_us": mean_l * 1e6,
            "mean_ratio": mean_l / mean_p, "paired_ratio": statistics.median(paired)}


def log_call_cost(store_path: Path, calls: int = 100_000) -> tuple[float, float]:
    """Microseconds per ``run.log(step, train_loss=..., train_acc=...)``, and per empty call of the same shape."""

    def empty(step, **metrics):
        for _ in metrics.items():
            pass

    best_log, best_empty = math.inf, math.inf
    with start_run(store_path, zoo="bench", name="log-call", arch="mlp", dataset="mnist1d") as run:
        for _ in range(3):
            t0 = time.perf_counter()
            for s in range(calls):
                empty(s, train_loss=0.5, train_acc=0.5)
            best_empty = min(best_empty, time.perf_counter() - t0)
            t0 = time.perf_counter()
            for s in range(calls):
                run.log(s, train_loss=0.5, train_acc=0.5)
            best_log = min(best_log, time.perf_counter() - t0)
    return best_log / calls * 1e6, best_empty / calls * 1e6


def _save_fsynced(state: dict, path: Path) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(path))
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_cost(store_path: Path, width: int, depth: int, repeat: int) -> dict[str, float]:
    torch.set_num_threads(1)
    _, model, _ = _setup(width, depth)
    n_params = sum(p.numel() for p in model.parameters())
    plain, tracked, whole = [], [], []
    with tempfile.TemporaryDirectory() as tmp, start_run(store_path, zoo="bench", name=f"ckpt-w{width}",
                                                         arch="mlp", dataset="mnist1d") as run:
        for i in range(repeat):
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(1e-3)  # new weights: a new artifact each round
            t0 = time.perf_counter()
            _save_fsynced(model.state_dict(), Path(tmp) / f"{i}.safetensors")
            plain.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            run.checkpoint(model, i, train_loss=0.1)
            tracked.append(time.perf_counter() - t0)
            run.flush(wait=True)
            whole.append(time.perf_counter() - t0)
    med_p, med_t, med_w = statistics.median(plain), statistics.median(tracked), statistics.median(whole)
    return {"params": n_params, "mb": n_params * 4 / 1e6, "save_file_ms": med_p * 1e3, "checkpoint_ms": med_t * 1e3,
            "whole_ms": med_w * 1e3, "ratio": med_t / med_p, "whole_ratio": med_w / med_p}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3000, help="timed steps per variant and thread count")
    ap.add_argument("--block", type=int, default=250, help="steps per alternating block")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--ckpt-repeat", type=int, default=10)
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        store_path = Path(tmp) / "store"
        print(f"run.log every step, K=1 MLP (width 64, depth 2) on MNIST-1D, batch {args.batch}, "
              f"{args.steps} steps per variant in blocks of {args.block}")
        for threads in args.threads:
            r = logging_overhead(store_path, threads, args.steps, args.block, args.batch)
            print(f"  {threads} thread(s): median step {r['median_plain_us']:7.1f} us plain, "
                  f"{r['median_logged_us']:7.1f} us with run.log -> ratio {r['median_ratio']:.3f} "
                  f"(median of paired blocks {r['paired_ratio']:.3f}); "
                  f"mean {r['mean_plain_us']:7.1f} / {r['mean_logged_us']:7.1f} us -> ratio {r['mean_ratio']:.3f}")
        per_log, per_empty = log_call_cost(store_path)
        print(f"  one run.log call with 2 metrics: {per_log:.2f} us (an empty Python call of that shape: "
              f"{per_empty:.2f} us)")
        print("run.checkpoint vs safetensors save_file + fsync of the same state_dict (medians, 1 thread)")
        for width, depth in ((64, 2), (1024, 4)):
            c = checkpoint_cost(store_path, width, depth, args.ckpt_repeat)
            print(f"  mlp width {width} depth {depth} ({c['params']:,} params, {c['mb']:.1f} MB): "
                  f"save_file+fsync {c['save_file_ms']:6.2f} ms; run.checkpoint: loop waits "
                  f"{c['checkpoint_ms']:6.2f} ms (ratio {c['ratio']:.2f}), bundle in the inbox after "
                  f"{c['whole_ms']:6.2f} ms (ratio {c['whole_ratio']:.2f})")


if __name__ == "__main__":
    main()
