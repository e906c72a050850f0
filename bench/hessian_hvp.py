"""Cost of one Hessian-vector product, in forward passes: the ways to form it, side by side.

Run: .venv/bin/python bench/hessian_hvp.py [--widths 100,512] [--n 1000] [--threads 1]

On a MNIST-1D MLP (40 -> w -> w -> 10) and ``--n`` samples, times (process CPU time, so
that other work on a shared machine matters less; one thread by default) of:

- a forward pass (the unit);
- ``jvp`` of ``grad`` (forward-over-reverse; recomputes the forward and backward pass);
- ``vjp`` of ``grad`` built once (reverse-over-reverse with the primal kept), single and
  under ``vmap`` over 10 vectors;
- PyHessian's way: ``torch.autograd.grad`` through a ``create_graph`` gradient, graph kept.

This is the measurement behind ``HessianOperator``'s default (``mode="vjp"``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import landscape_common as common
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, jvp, vjp, vmap

from engine.config import ArchSpec
from engine.nets import build
from engine.probes.core import ParamLayout


def cpu_ms(fn, repeats: int = 9) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return 1e3 * statistics.median(times)


def bench_width(width: int, n: int, out) -> None:
    model = build(ArchSpec(name="mlp", width=width, depth=2), (1, 40), 10, seed=0).eval()
    x, y = common.mnist1d(n, torch.device("cpu"))
    layout = ParamLayout.from_module(model)
    theta = layout.flatten(dict(model.named_parameters()))

    def loss(t):
        return F.cross_entropy(functional_call(model, layout.unflatten(t), (x,)), y)

    g = grad(loss)
    v, vs = torch.randn_like(theta), torch.randn(10, theta.numel())
    _, pullback = vjp(g, theta)
    batched = vmap(lambda u: pullback(u)[0])
    params = list(model.parameters())
    graph = torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)
    tangents = [torch.randn_like(p) for p in params]

    def build_graph():
        return torch.autograd.grad(F.cross_entropy(model(x), y), params, create_graph=True)

    def build_vjp():
        return vjp(g, theta)

    fwd = cpu_ms(lambda: loss(theta))
    rows = [
        ("forward pass", fwd),
        ("jvp of grad (per product)", cpu_ms(lambda: jvp(g, (theta,), (v,)))),
        ("vjp of grad, cached (per product)", cpu_ms(lambda: pullback(v))),
        ("  same, vmap over 10 (per product)", cpu_ms(lambda: batched(vs)) / 10),
        ("  its one-off setup (forward + backward)", cpu_ms(build_vjp)),
        ("PyHessian double backward (per product)",
         cpu_ms(lambda: torch.autograd.grad(graph, params, grad_outputs=tangents, retain_graph=True))),
        ("  its one-off setup (create_graph gradient)", cpu_ms(build_graph)),
    ]
    out(f"\n## MLP width {width}, P={layout.numel}, N={n}")
    out(f"{'way':44s} {'cpu ms':>8s} {'forward passes':>15s}")
    for label, ms in rows:
        out(f"{label:44s} {ms:8.2f} {ms / fwd:15.1f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="100,512")
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = common.Report("hessian_hvp_cpu")
    out(f"# Hessian-vector product cost on cpu ({torch.get_num_threads()} thread(s)), torch {torch.__version__}, "
        f"{time.strftime('%Y-%m-%d %H:%M')}; medians of 9, process CPU time")
    for width in args.widths.split(","):
        bench_width(int(width), args.n, out)
    print(f"saved {out.save()}")


if __name__ == "__main__":
    main()
