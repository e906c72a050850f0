"""Top Hessian eigenvalue and trace: Zooscope (Lanczos, batched Hutchinson) against PyHessian.

Run: .venv/bin/python bench/hessian_top.py [--n 1000] [--models mlp100,mlp512] [--probes 100]

Both run in this one process on the same briefly trained MNIST-1D model and the same
batch. PyHessian (Yao et al. 2020) computes the top eigenvalue by power iteration
(``eigenvalues(maxIter=100, tol=1e-3)``) and the trace by Hutchinson with Rademacher
probes; its trace is run with ``tol=0`` so that both use the same number of probes.
Zooscope uses Lanczos (``hessian_top_eigs(tol=1e-3)``: relative residual below 1e-3) and
``hessian_trace`` with batches of probes under ``vmap``. Timings are medians of
``--repeats`` interleaved rounds and include each library's setup (PyHessian's
``hessian(...)`` builds the gradient graph). Hessian-vector products are counted.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import statistics
import time

import landscape_common as common
import numpy as np
import torch
from torch import nn

from engine.config import ArchSpec
from engine.nets import build
from engine.probes.curvature import hessian_top_eigs, hessian_trace

MODELS = {
    "mlp100": ArchSpec(name="mlp", width=100, depth=2),
    "mlp512": ArchSpec(name="mlp", width=512, depth=2),
    "cnn": ArchSpec(name="cnn1d", width=32, depth=3),
}


def trained(spec, x, y, steps: int, dev) -> nn.Module:
    """A model after a few full-batch Adam steps, so the Hessian is not that of an init."""
    model = build(spec, (1, 40), 10, seed=0).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(steps):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


class Counter:
    """Counts PyHessian's Hessian-vector products by wrapping its module-level function."""

    def __init__(self):
        ph = importlib.import_module("pyhessian.hessian")  # the module (the package re-exports a class of that name)
        self.module, self.original, self.calls = ph, ph.hessian_vector_product, 0

        def counted(*args, **kwargs):
            self.calls += 1
            return self.original(*args, **kwargs)

        ph.hessian_vector_product = counted

    def take(self) -> int:
        calls, self.calls = self.calls, 0
        return calls


def pyhessian_top(model, x, y, counter):
    from pyhessian import hessian

    hc = hessian(copy.deepcopy(model), nn.CrossEntropyLoss(), data=(x, y), cuda=x.is_cuda)
    values, _ = hc.eigenvalues(maxIter=100, tol=1e-3, top_n=1)
    return float(values[0]), counter.take()


def pyhessian_trace(model, x, y, n_probes, counter):
    from pyhessian import hessian

    hc = hessian(copy.deepcopy(model), nn.CrossEntropyLoss(), data=(x, y), cuda=x.is_cuda)
    samples = np.asarray(hc.trace(maxIter=n_probes, tol=0.0))
    return float(samples.mean()), float(samples.std(ddof=1) / np.sqrt(len(samples))), counter.take()


def rounds(fns: dict, repeats: int) -> dict:
    """Run each function once per round, interleaved; median time and last result each.

    One untimed round first: both libraries pay one-off costs on their first call in a
    process (PyTorch loads its forward-AD decompositions, oneDNN builds kernels).
    """
    times = {k: [] for k in fns}
    results = {name: fn() for name, fn in fns.items()}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            results[name] = fn()
            times[name].append(time.perf_counter() - start)
    return {k: (statistics.median(v), results[k]) for k, v in times.items()}


def bench_model(name, spec, x, y, args, dev, out, counter):
    model = trained(spec, x, y, args.train_steps, dev)
    params = {k: v.detach() for k, v in model.named_parameters()}
    n_params = sum(p.numel() for p in params.values())
    out(f"\n## {name}: {spec.name} width={spec.width} depth={spec.depth}, P={n_params}, batch N={len(x)}")
    res = rounds({
        "pyhessian top": lambda: pyhessian_top(model, x, y, counter),
        "zooscope top": lambda: hessian_top_eigs(model, params, (x, y), k=1, tol=1e-3, max_iter=100),
        "pyhessian trace": lambda: pyhessian_trace(model, x, y, args.probes, counter),
        "zooscope trace": lambda: hessian_trace(model, params, (x, y), n_probes=args.probes, batch=args.batch),
    }, args.repeats)
    (t_pt, (ph_top, ph_n)), (t_zt, zt) = res["pyhessian top"], res["zooscope top"]
    (t_ptr, (ph_tr, ph_se, ph_ntr)), (t_ztr, ztr) = res["pyhessian trace"], res["zooscope trace"]
    rel_top = abs(zt.eigenvalues[0] - ph_top) / abs(ph_top)
    rel_tr = abs(ztr.trace - ph_tr) / abs(ph_tr)
    z_tr = abs(ztr.trace - ph_tr) / np.hypot(ztr.stderr, ph_se)
    out(f"{'quantity':10s} {'library':10s} {'value':>12s} {'HVPs':>6s} {'seconds':>9s} {'speed-up':>9s}")
    out(f"{'top eig':10s} {'pyhessian':10s} {ph_top:12.5g} {ph_n:6d} {t_pt:9.3f}")
    out(f"{'top eig':10s} {'zooscope':10s} {zt.eigenvalues[0]:12.5g} {zt.n_products:6d} {t_zt:9.3f} {t_pt / t_zt:8.2f}x")
    out(f"{'trace':10s} {'pyhessian':10s} {ph_tr:12.5g} {ph_ntr:6d} {t_ptr:9.3f}")
    out(f"{'trace':10s} {'zooscope':10s} {ztr.trace:12.5g} {ztr.n_probes:6d} {t_ztr:9.3f} {t_pp(t_ptr, t_ztr)}")
    out(f"top eig relative difference {rel_top:.2e} (zooscope residual {zt.residuals[0]:.2e}); trace relative "
        f"difference {rel_tr:.2%} = {z_tr:.2f} combined standard errors (stderr: zooscope {ztr.stderr:.3g}, "
        f"pyhessian {ph_se:.3g})")
    return t_pt / t_zt, t_ptr / t_ztr, rel_top, rel_tr


def t_pp(ref: float, ours: float) -> str:
    return f"{ref / ours:8.2f}x"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="batch size (samples)")
    parser.add_argument("--models", default="mlp100,mlp512,cnn")
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--batch", type=int, default=10, help="zooscope probes per vmap batch")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=100)
    args = parser.parse_args()
    dev = common.device()
    out = common.Report(f"hessian_top_{dev.type}")
    x, y = common.mnist1d(args.n, dev)
    try:
        import pyhessian  # noqa: F401
    except ImportError as err:
        out(f"pyhessian is not installed ({err}); install with .venv/bin/pip install --no-deps pyhessian")
        out.save()
        return
    out(f"# Hessian benchmark on {dev.type} ({torch.get_num_threads()} threads), torch {torch.__version__}; "
        f"medians of {args.repeats} interleaved rounds")
    counter = Counter()
    summary = {name: bench_model(name, MODELS[name], x, y, args, dev, out, counter) for name in args.models.split(",")}
    out("\n## summary")
    for name, (s_top, s_tr, rel_top, rel_tr) in summary.items():
        out(f"{name:8s} top eig {s_top:5.2f}x faster (rel. diff {rel_top:.1e}); trace {s_tr:5.2f}x faster "
            f"(rel. diff {rel_tr:.1%})")
    print(f"saved {out.save()}")


if __name__ == "__main__":
    main()
