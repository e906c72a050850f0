"""The ConvNet chain's element-wise steps: PyTorch's operators against the compiled loops.

Run: .venv/bin/python bench/conv_block_kernels.py [--rows 128 256] [--threads 1]

For one block of rows of the MNIST-1D CNN (width 32, 40 positions), in one process: the first block
(convolution, 2-pool, ReLU) as ``conv_plane`` runs it on PyTorch (a product of the input windows
with ``c_in k + 1`` columns, ``maximum`` of its two halves, ``relu_``) and as the compiled loop, and
a later pool with its ReLU (``maximum`` + ``relu_`` against the loop) at L = 20 and 10. Medians of
300 calls; the last column is PyTorch's time over the loop's.
"""

from __future__ import annotations

import argparse
import time

import landscape_common as common
import torch
from torch.nn import functional as F  # noqa: N812

from engine.probes.core import native


def median_us(fn, repeats=300):
    for _ in range(20):  # warm: kernels, caches
        fn()
    return common.timed(fn, torch.device("cpu"), repeats)[0] * 1e6


def first_block(k, n, c=32, length=40):
    x = torch.randn(n, 1, length)
    padded = F.pad(x, (1, 1)).contiguous()
    w, b = torch.randn(3, c), torch.randn(c)
    windows = padded[:, 0].unfold(1, 3, 1).reshape(n, length // 2, 2, 3).transpose(1, 2).reshape(-1, 3)
    windows = torch.cat([windows, torch.ones(len(windows), 1)], 1).contiguous()
    weights = torch.cat([w, b[None]])
    out = torch.empty(n * length, c)
    pad = torch.zeros(n * (length // 2 + 1) + 1, c + 1)
    dst = pad[1:].view(n, length // 2 + 1, c + 1)[:, : length // 2, :c]
    halves = out.view(n, 2, length // 2, c)

    def ops():
        torch.mm(windows, weights, out=out)
        torch.maximum(halves[:, 0], halves[:, 1], out=dst)
        dst.relu_()

    return ops, k.conv_pool_relu(padded, w, b, True, dst)


def later_pool(k, n, length, c=32):
    src = torch.randn(n * (length + 1), c).view(n, length + 1, c)[:, :length]
    pad = torch.zeros(n * (length // 2 + 1) + 1, c + 1)
    dst = pad[1:].view(n, length // 2 + 1, c + 1)[:, : length // 2, :c]

    def ops():
        torch.maximum(src[:, 0::2], src[:, 1::2], out=dst)
        dst.relu_()

    return ops, k.pool_relu(src, True, dst)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[128, 256])
    parser.add_argument("--threads", type=int, nargs="+", default=[1],
                        help="torch threads for PyTorch's operators (a point worker runs one; the loop is one thread)")
    args = parser.parse_args()
    k = native.kernels()
    if k is None:
        raise SystemExit("the compiled loops are not available here (no C compiler, or ZOOSCOPE_NATIVE_KERNELS=0)")
    out = common.Report("conv_block_kernels")
    out(f"# ConvNet block steps, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"load average {common.load_average()}; medians of 300 calls, microseconds")
    out(f"{'step':34s} {'threads':>7s} {'rows':>5s} {'pytorch':>9s} {'compiled':>9s} {'ratio':>6s}")
    for threads in args.threads:
        torch.set_num_threads(threads)
        for n in args.rows:
            cases = {"first block (conv 1->32, pool, relu)": first_block(k, n)}
            cases.update({f"pool + relu at L={L}": later_pool(k, n, L) for L in (20, 10)})
            for name, (ops, loop) in cases.items():
                a, b = median_us(ops), median_us(loop)
                out(f"{name:34s} {threads:7d} {n:5d} {a:9.1f} {b:9.1f} {a / b:5.2f}x")
    print(f"saved {out.save()}")


if __name__ == "__main__":
    main()
