"""Where a point of the CNN w=32 surface goes: the products against everything else, at one thread.

Run: .venv/bin/python bench/conv_point_profile.py [--points 300] [--n 4000]

The MNIST-1D CNN of ``landscape_surface.py`` (width 32, 4,000 samples, the same directions), one
point function of ``conv_plane`` on the caller's thread at one thread, its row blocks as measured.
Prints the wall time a point; with the compiled loops, the time of the same plan with only its
products (the BLAS calls a point makes, in its order and shapes: what no change to the element-wise
steps can remove); and ``torch.profiler``'s self time a point by operator and shape for the chain
on PyTorch's operators (``ZOOSCOPE_NATIVE_KERNELS=0``; the compiled loops are not operators).
"""

from __future__ import annotations

import argparse
import os
import time
from collections import defaultdict

import landscape_common as common
import torch
from torch.profiler import ProfilerActivity, profile

from engine.config import ArchSpec
from engine.nets import build
from engine.probes.core import Evaluator, ParamLayout, native
from engine.probes.core.conv_plane import _runner  # noqa: PLC2701 - the chain's internals, measured
from engine.probes.landscape import random_direction


def per_point_ms(fn, points: int, passes: int = 5) -> float:
    fn()
    times = []
    for _ in range(passes):
        start = time.perf_counter()
        for _ in range(points):
            fn()
        times.append((time.perf_counter() - start) / points * 1e3)
    return sorted(times)[passes // 2]


def chain(n: int, native_loops: bool):
    """The runner over the surface's data, its thread state at theta0, and the block size it measured."""
    os.environ[native.ENV] = "1" if native_loops else "0"
    x, y = common.mnist1d(n, torch.device("cpu"))
    model = build(ArchSpec(name="cnn1d", width=32, depth=3), (1, 40), 10, seed=0).eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    layout = ParamLayout.from_module(model)
    d1, d2 = random_direction(params, seed=1), random_direction(params, seed=2)
    ev = Evaluator(model, (x, y), layout=layout)
    runner, vecs = _runner(ev, None, (layout.flatten(params), d1.flat(layout), d2.flat(layout)))
    st = runner.local
    st.params.copy_(vecs[0] + 0.3 * vecs[1] - 0.2 * vecs[2])
    block = runner._block_rows(st, ev.buffers)  # noqa: SLF001
    return ev, runner, st, block


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=300)
    parser.add_argument("--n", type=int, default=4000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = common.Report("conv_point_profile")
    out(f"# CNN w=32 surface point, 1 thread, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"load average {common.load_average()}; N={args.n}, {args.points} points a pass, median of 5 passes")
    out(f"dense 2048^2 matmul: {common.matmul_flops(torch.device('cpu'))[0] / 1e9:.1f} GFLOP/s at 1 thread")
    flops = 0
    ev, runner, st, block = chain(args.n, True)
    if runner.native is not None and runner.native.sgemm is not None:
        whole = per_point_ms(lambda: runner.evaluate(st, ev.buffers, ev.score), args.points)
        ops = []
        for lo in range(0, args.n, block):
            hi = min(args.n, lo + block)
            ops += runner._native_ops(st, st.works[hi - lo], runner.padded[lo:hi], st.last[lo:hi])  # noqa: SLF001
        products = [op for op in ops if op.code == 1]
        flops = sum(2 * m * n * k for m, n, k in (op.args[6:9] for op in products))
        alone = per_point_ms(runner.native.plan(products), args.points)
        out(f"compiled plan, blocks of {block} rows: {whole:.3f} ms a point; its {len(products)} products alone "
            f"{alone:.3f} ms ({flops / alone / 1e6:.1f} GFLOP/s, {alone / whole:.0%} of the point); "
            f"everything else {whole - alone:.3f} ms")
    ev, runner, st, block = chain(args.n, False)
    whole = per_point_ms(lambda: runner.evaluate(st, ev.buffers, ev.score), args.points)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for _ in range(args.points):
            runner.evaluate(st, ev.buffers, ev.score)
    out(f"PyTorch's operators (ZOOSCOPE_NATIVE_KERNELS=0), blocks of {block} rows: {whole:.3f} ms a point; "
        "self time a point by operator and input shapes (under the profiler):")
    by = defaultdict(lambda: [0.0, 0])
    for e in prof.key_averages(group_by_input_shape=True):
        by[(e.key, str(e.input_shapes))][0] += e.self_cpu_time_total / 1e3 / args.points
        by[(e.key, str(e.input_shapes))][1] += e.count // args.points
    for (k, shapes), (ms, calls) in sorted(by.items(), key=lambda kv: -kv[1][0])[:14]:
        out(f"  {k:18s} {ms:8.3f} ms {calls:5d} calls  {shapes[:90]}")
    print(f"saved {out.save()}")


if __name__ == "__main__":
    main()
