"""Weight matching on a 3x512 MLP: Zooscope vs a straightforward reference, side by side.

Target: <= 1 s on 2 CPU cores, and >= 3x faster than the reference.

The reference is Git Re-Basin's Algorithm 1 as its widely used PyTorch port writes it
(``get_permuted_param`` on every tensor of every perm, ``A`` accumulated in float32,
``linear_sum_assignment`` on ``A`` as is, objective via ``einsum`` with ``torch.eye``,
perm overwritten every time). Both run the same algorithm -- same random perm order
per pass from the same seed, same stopping rule -- on the same pair of models:

- ``trained``: two 3x512 MLPs trained on MNIST-1D from different seeds (the real use);
- ``init``: two freshly initialised ones (unstructured weights: the hardest LAPs).

Prints medians over seeds x repeats, the ratio, whether both found the same perms, and
the objective each reached.

    .venv/bin/python bench/alignment_weight_matching.py [--threads 2 1] [--repeats 3] [--steps 400]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from engine.config import ArchSpec, OptimSpec, TrainSpec
from engine.data import load
from engine.nets import build, permutation_spec
from engine.probes.connectivity import weight_matching
from engine.train import train_run

ARCH = ArchSpec(name="mlp", width=512, depth=3)


# ---------------------------------------------------------------- the reference


def _get_permuted_param(ps, perm, k, params, except_axis=None):
    w = params[k]
    for axis, p in enumerate(ps.axes_to_perm[k]):
        if axis == except_axis:
            continue
        if p is not None:
            w = torch.index_select(w, axis, perm[p].int())
    return w


def reference_weight_matching(ps, params_a, params_b, max_iter=100, seed=0):
    """Git Re-Basin weight matching, written the straightforward way (the PyTorch port)."""
    perm_sizes = {p: params_a[axes[0][0]].shape[axes[0][1]] for p, axes in ps.perm_to_axes.items()}
    perm = {p: torch.arange(n) for p, n in perm_sizes.items()}
    perm_names = sorted(perm)
    gen = torch.Generator().manual_seed(seed)
    for _ in range(max_iter):
        progress = False
        for p_ix in torch.randperm(len(perm_names), generator=gen):
            p = perm_names[p_ix]
            n = perm_sizes[p]
            A = torch.zeros((n, n))
            for wk, axis in ps.perm_to_axes[p]:
                w_a = params_a[wk]
                w_b = _get_permuted_param(ps, perm, wk, params_b, except_axis=axis)
                w_a = torch.moveaxis(w_a, axis, 0).reshape((n, -1))
                w_b = torch.moveaxis(w_b, axis, 0).reshape((n, -1))
                A += w_a @ w_b.T
            ri, ci = linear_sum_assignment(A.detach().numpy(), maximize=True)
            assert (torch.tensor(ri) == torch.arange(len(ri))).all()
            old_l = torch.einsum("ij,ij->i", A, torch.eye(n)[perm[p].long()]).sum()
            new_l = torch.einsum("ij,ij->i", A, torch.eye(n)[ci, :]).sum()
            progress = progress or bool(new_l > old_l + 1e-12)
            perm[p] = torch.tensor(ci)
        if not progress:
            break
    return perm


# ---------------------------------------------------------------- setup and timing


def _objective(ps, a, b, perms) -> float:
    from engine.nets import apply_permutation

    pb = apply_permutation(ps, {k: torch.as_tensor(np.asarray(v)).long() for k, v in perms.items()}, b)
    return float(sum(torch.vdot(a[k].reshape(-1).double(), pb[k].reshape(-1).double()) for k in a))


def _trained_pair(steps: int):
    ds = load("mnist1d")
    states = []
    for seed in (0, 1):
        spec = TrainSpec(arch=ARCH, optim=OptimSpec(name="momentum", lr=0.05), batch_size=128, steps=steps,
                         seed=seed, checkpoints=[steps], device="cpu")
        out = {}
        train_run(spec, dataset=ds, on_checkpoint=lambda run, step, epoch, state, metrics, out=out: out.update(state))
        states.append(out)
    return states


def _median_time(fn, repeats):
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def run_case(name, a, b, ps, seeds, repeats):
    rows = []
    for seed in seeds:
        t_ours, ours = _median_time(lambda seed=seed: weight_matching(a, b, ps, seed=seed), repeats)
        t_ref, ref = _median_time(lambda seed=seed: reference_weight_matching(ps, a, b, seed=seed), repeats)
        same = all(np.array_equal(ours.perms[p], ref[p].numpy()) for p in ref)
        rows.append((t_ours, t_ref, same, ours.iterations, _objective(ps, a, b, ours.perms),
                     _objective(ps, a, b, {p: t.numpy() for p, t in ref.items()})))
    t_ours = statistics.median(r[0] for r in rows)
    t_ref = statistics.median(r[1] for r in rows)
    return [
        f"{name:<8} zooscope weight_matching  {t_ours * 1e3:9.1f} ms   (passes {[r[3] for r in rows]})",
        f"{name:<8} reference (plain port)    {t_ref * 1e3:9.1f} ms",
        f"{name:<8} ratio reference / zooscope {t_ref / t_ours:8.2f}x   same perms as reference: "
        f"{sum(r[2] for r in rows)}/{len(rows)} seeds; objective zooscope {np.mean([r[4] for r in rows]):.4f} "
        f"vs reference {np.mean([r[5] for r in rows]):.4f}",
        f"{name:<8} target <= 1 s: {'yes' if t_ours <= 1.0 else 'NO'};  >= 3x reference: "
        f"{'yes' if t_ref / t_ours >= 3 else 'NO'}",
    ]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, nargs="+", default=[2, 1], help="torch thread counts to run")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=400, help="training steps of the 'trained' pair")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "alignment_weight_matching.txt"))
    args = ap.parse_args()
    ps = permutation_spec(build(ARCH, (1, 40), 10))
    trained = _trained_pair(args.steps)
    init = [build(ARCH, (1, 40), 10, seed=s).state_dict() for s in (0, 1)]
    seeds = list(range(args.seeds))
    lines = [f"weight matching, 3x512 MLP (MNIST-1D shapes, {sum(v.numel() for v in init[0].values())} parameters), "
             f"{os.cpu_count()} CPUs, {platform.machine()}; medians over {args.repeats} repeats x {len(seeds)} seeds"]
    for threads in args.threads:
        torch.set_num_threads(threads)
        lines.append(f"-- torch threads {threads}; load average at start {os.getloadavg()[0]:.1f} "
                     f"(the machine is shared: timings move with it, ratios much less)")
        for name, (a, b) in (("trained", trained), ("init", init)):
            _median_time(lambda a=a, b=b: weight_matching(a, b, ps, seed=0, max_iter=1), 1)  # warm-up
            lines += run_case(name, a, b, ps, seeds, args.repeats)
            print("\n".join(lines[-4:]), flush=True)
    text = "\n".join(lines)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
