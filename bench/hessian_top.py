"""Top Hessian eigenvalue and trace: Zooscope (Lanczos, Hutchinson, Hutch++) against PyHessian.

Run: .venv/bin/python bench/hessian_top.py [--n 1000] [--models mlp100,mlp512,cnn] [--probes 100] [--threads 2 1]

Both run in this one process on the same briefly trained MNIST-1D model and the same
batch. PyHessian (Yao et al. 2020) computes the top eigenvalue by power iteration
(``eigenvalues(maxIter=100, tol=1e-3)``) from a random start, seeded (a different seed each
round, the same seeds in every run: its products and accuracy depend on the start), and the
trace by Hutchinson with Rademacher probes; its trace runs with ``tol=0`` so that both use the same number of probes.
Zooscope uses Lanczos (``hessian_top_eigs(tol=1e-3)``: relative residual below 1e-3),
``hessian_trace`` (Hutchinson) and ``hessian_trace(method="hutch++")``, which spends the
same products but deflates the top of the spectrum. Timings include each library's
setup and are medians of ``--repeats`` interleaved rounds after an untimed one (first
calls in a process pay one-off costs). Hessian-vector products (HVPs) are counted.
"""

from __future__ import annotations

import argparse
import importlib
import time

import landscape_common as common
import numpy as np
import torch
from torch import nn

from engine.config import ArchSpec
from engine.nets import build
from engine.probes.landscape import hessian_top_eigs, hessian_trace

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
        self.original, self.calls = ph.hessian_vector_product, 0

        def counted(*args, **kwargs):
            self.calls += 1
            return self.original(*args, **kwargs)

        ph.hessian_vector_product = counted

    def take(self) -> int:
        calls, self.calls = self.calls, 0
        return calls


class Seeds:
    """Seeds for PyHessian's random start (``torch.randn`` inside ``eigenvalues``), one per call,
    the same sequence in every pass (:meth:`restart`): its products, time and error depend on
    the start, so every round of a pass times a different but reproducible start."""

    def __init__(self, base: int = 1000):
        self.base, self.k = base, 0

    def restart(self) -> None:
        self.k = 0

    def next(self) -> int:
        self.k += 1
        return self.base + self.k - 1


def pyhessian_top(model, x, y, counter, seed: int | None = None):
    from pyhessian import hessian

    if seed is not None:
        torch.manual_seed(seed)
    hc = hessian(model, nn.CrossEntropyLoss(), data=(x, y), cuda=x.is_cuda)
    values, _ = hc.eigenvalues(maxIter=100, tol=1e-3, top_n=1)
    model.zero_grad(set_to_none=True)  # PyHessian leaves create_graph gradients on the model
    return float(values[0]), counter.take()


def pyhessian_trace(model, x, y, n_probes, counter):
    from pyhessian import hessian

    hc = hessian(model, nn.CrossEntropyLoss(), data=(x, y), cuda=x.is_cuda)
    samples = np.asarray(hc.trace(maxIter=n_probes, tol=0.0))
    model.zero_grad(set_to_none=True)
    return float(samples.mean()), float(samples.std(ddof=1) / np.sqrt(len(samples))), counter.take()


def bench_model(name, spec, x, y, args, dev, out, counter):
    model = trained(spec, x, y, args.train_steps, dev)
    params = {k: v.detach() for k, v in model.named_parameters()}
    n_params = sum(p.numel() for p in params.values())
    out(f"\n## {name}: {spec.name} width={spec.width} depth={spec.depth}, P={n_params}, batch N={len(x)}")
    seeds = Seeds()
    fns = {
        "pyhessian top": lambda: pyhessian_top(model, x, y, counter, seeds.next()),
        "zooscope top": lambda: hessian_top_eigs(model, params, (x, y), k=1, tol=1e-3, max_iter=100),
        "zooscope top 1e-2": lambda: hessian_top_eigs(model, params, (x, y), k=1, tol=1e-2, max_iter=100),
        "pyhessian trace": lambda: pyhessian_trace(model, x, y, args.probes, counter),
        "zooscope trace": lambda: hessian_trace(model, params, (x, y), n_probes=args.probes, batch=args.batch),
        "zooscope hutch++": lambda: hessian_trace(model, params, (x, y), n_probes=args.probes, batch=args.batch,
                                                  method="hutch++"),
    }
    {k: fn() for k, fn in fns.items()}  # untimed warm-up round
    exact = hessian_top_eigs(model, params, (x, y), k=1, tol=1e-7, max_iter=300).eigenvalues[0]  # reference
    # PyHessian from the starts the timed rounds will use (untimed here): its error and products per start
    seeds.restart()
    starts = [pyhessian_top(model, x, y, counter, seeds.next()) for _ in range(args.repeats)]
    ph_errs = sorted(abs(v - exact) / abs(exact) for v, _ in starts)
    ph_products = sorted(n for _, n in starts)
    out(f"PyHessian from {args.repeats} seeded starts: {ph_products[0]}-{ph_products[-1]} products (median "
        f"{ph_products[len(ph_products) // 2]}), relative error {ph_errs[0]:.1e}-{ph_errs[-1]:.1e} (median "
        f"{ph_errs[len(ph_errs) // 2]:.1e})")
    # Equal accuracy: the fewest Lanczos steps whose eigenvalue is as close to the reference as
    # PyHessian's power iteration got from its median start (its stopping rule decides its accuracy).
    ph_err = ph_errs[len(ph_errs) // 2]
    m_equal = next(m for m in range(2, 301) if abs(hessian_top_eigs(
        model, params, (x, y), k=1, tol=0.0, max_iter=m).eigenvalues[0] - exact) / abs(exact) <= ph_err)
    fns["zooscope top equal"] = lambda: hessian_top_eigs(model, params, (x, y), k=1, tol=0.0, max_iter=m_equal)
    seeds.restart()  # the timed rounds start from the same seeds
    wall, cpu, res = common.rounds(fns, dev, args.repeats)
    ph_top, ph_n = res["pyhessian top"]
    zt, zt2 = res["zooscope top"], res["zooscope top 1e-2"]
    ph_tr, ph_se, ph_ntr = res["pyhessian trace"]
    ztr, hpp = res["zooscope trace"], res["zooscope hutch++"]
    ph_n = ph_products[len(ph_products) // 2]  # the median start's products (the timed value is a median too)
    rows = [
        ("top eig", "pyhessian power", ph_top, "", ph_n, "pyhessian top", None),
        ("top eig", "zooscope Lanczos", zt.eigenvalues[0], "", zt.n_products, "zooscope top", "pyhessian top"),
        ("top eig", "  same, tol=1e-2", zt2.eigenvalues[0], "", zt2.n_products, "zooscope top 1e-2", "pyhessian top"),
        ("top eig", "  PyHessian's acc.", res["zooscope top equal"].eigenvalues[0], "",
         res["zooscope top equal"].n_products, "zooscope top equal", "pyhessian top"),
        ("trace", "pyhessian Hutch.", ph_tr, ph_se, ph_ntr, "pyhessian trace", None),
        ("trace", "zooscope Hutch.", ztr.trace, ztr.stderr, ztr.n_probes, "zooscope trace", "pyhessian trace"),
        ("trace", "zooscope Hutch++", hpp.trace, hpp.stderr, hpp.n_probes, "zooscope hutch++", "pyhessian trace"),
    ]
    out(f"{'quantity':9s} {'method':17s} {'value':>10s} {'stderr':>8s} {'HVPs':>5s} {'wall s':>8s} {'cpu s':>8s} "
        f"{'speed-up wall':>13s} {'cpu':>6s}")
    for qty, label, value, se, n, key, ref in rows:
        se_text = f"{se:8.3g}" if se != "" else " " * 8
        speed = f"{wall[ref] / wall[key]:12.2f}x {cpu[ref] / cpu[key]:5.2f}x" if ref else ""
        out(f"{qty:9s} {label:17s} {value:10.5g} {se_text} {n:5d} {wall[key]:8.3f} {cpu[key]:8.3f} {speed}")
    rel_top = abs(zt.eigenvalues[0] - ph_top) / abs(ph_top)
    z_tr = abs(ztr.trace - ph_tr) / np.hypot(ztr.stderr, ph_se)
    # Hutchinson's error falls as 1/sqrt(probes): products it needs for Hutch++'s error bar
    equal = args.probes * (ph_se / hpp.stderr) ** 2
    speed_equal = equal / args.probes * wall["pyhessian trace"] / wall["zooscope hutch++"]
    err = [abs(v - exact) / abs(exact) for v in (ph_top, zt.eigenvalues[0], zt2.eigenvalues[0])]
    out(f"top eig: reference {exact:.7g} (Lanczos, tol 1e-7); relative errors: pyhessian {err[0]:.1e}, zooscope "
        f"{err[1]:.1e} (tol 1e-3), {err[2]:.1e} (tol 1e-2); zooscope vs pyhessian {rel_top:.1e}")
    out(f"trace: Hutchinson estimates differ by {z_tr:.2f} combined standard errors, "
        f"Hutch++ by {abs(hpp.trace - ph_tr) / np.hypot(hpp.stderr, ph_se):.2f}")
    out(f"trace at equal accuracy: PyHessian would need ~{equal:.0f} probes for Hutch++'s standard error "
        f"({hpp.stderr:.3g}), i.e. Hutch++ is ~{speed_equal:.1f}x faster at equal error")
    out(f"top eig at equal accuracy: {m_equal} Lanczos steps reach PyHessian's median error ({ph_err:.1e}); "
        f"{wall['pyhessian top'] / wall['zooscope top equal']:.2f}x faster")
    return (wall["pyhessian top"] / wall["zooscope top"], wall["pyhessian top"] / wall["zooscope top 1e-2"],
            wall["pyhessian trace"] / wall["zooscope trace"], speed_equal, rel_top,
            wall["pyhessian top"] / wall["zooscope top equal"])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1000, help="batch size (samples)")
    parser.add_argument("--models", default="mlp100,mlp512,cnn")
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--batch", type=int, default=None,
                        help="zooscope probes per vmap batch (default: hessian_trace's, 1 on a CPU, 16 on a GPU)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=100)
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 1],
                        help="torch thread counts, each a full run in this process (default: 2 then 1)")
    args = parser.parse_args()
    dev = common.device()
    threads = args.threads if dev.type == "cpu" else [torch.get_num_threads()]
    out = common.Report(f"hessian_top_{dev.type}" + "".join(f"_t{t}" for t in threads))
    x, y = common.mnist1d(args.n, dev)
    try:
        counter = Counter()
    except ImportError as err:
        out(f"pyhessian is not installed ({err}); install with .venv/bin/pip install --no-deps pyhessian")
        out.save()
        return
    summary = {}
    for t in threads:
        torch.set_num_threads(t)
        out(f"\n# Hessian benchmark on {dev.type} ({torch.get_num_threads()} threads), torch {torch.__version__}; "
            f"medians of {args.repeats} interleaved rounds, {time.strftime('%Y-%m-%d %H:%M')}; "
            f"load average {common.load_average()}")
        for name in args.models.split(","):
            summary[name, t] = bench_model(name, MODELS[name], x, y, args, dev, out, counter)
    out("\n## summary (wall-time ratios, PyHessian / Zooscope), by thread count")
    for (name, t), (s_top, s_top2, s_tr, s_eq, rel_top, s_top_eq) in summary.items():
        out(f"{name:8s} {t} thr  top eig {s_top:5.2f}x at tol 1e-3, {s_top2:5.2f}x at tol 1e-2, {s_top_eq:5.2f}x at "
            f"PyHessian's accuracy (values differ by {rel_top:.1e}); trace, same probes {s_tr:5.2f}x; trace at equal "
            f"error (Hutch++) ~{s_eq:.1f}x")
    print(f"saved {out.save()}")


if __name__ == "__main__":
    main()
