"""Reproduction: how often a randomly initialised ReLU MLP has no hidden symmetries.

Grigsby, Lindsey and Rolnick ("Hidden symmetries of ReLU networks", ICML 2023) estimate the
functional dimension of random networks with one output by the rank of the Jacobian of the
outputs on i.i.d. standard normal inputs, and find that the probability of no hidden
symmetries (rank == #parameters - #hidden neurons) falls toward 0 as depth grows and rises
toward 1 as width and input dimension grow. This script measures that probability with
``engine.probes.functional_dimension`` over two sweeps, each for depth 1..5:

- width = input dimension in {3, 5, 8, 12} (the paper's ``n0 = n1 = ... = n_{d-1}``);
- input dimension in {1, 2, 4, 8} at width 8.

Each network: Zooscope's MLP (one output) re-initialised with He-normal weights
(std sqrt(2 / fan_in)) and N(0, 0.1^2) biases from its own seed. Inputs: ``2 * #parameters``
standard normal points from another seed; while the rank is short of the bound and the last
doubling raised it, the batch is doubled (new points added to the old), up to 32x and 4096
points. A batch's rank is a lower bound on the functional dimension; a fixed 4x batch
undercounts where kinks crowd together (one input dimension: 4x left 9 of 10 one-hidden-layer nets short, 64x none).
With ``--init torch`` PyTorch's default uniform initialisation is used instead (deep layers are
bias-dominated there, and the probability is near 0 from depth 2).

It then checks the three trends on the measured proportions (Spearman correlations: with
depth over each sweep, with width and input dimension within depths 2 and 3) and prints
PASS or FAIL for each. Writes
bench/results/functional_dimension.txt and the README figure assets/functional_dimension.png.

    .venv/bin/python bench/functional_dimension.py [--inits 25] [--oversample 2] [--max-oversample 32]
                                                   [--max-inputs 4096] [--init he|torch]
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import time
from pathlib import Path

import pandas as pd
import torch
from scipy.stats import spearmanr
from torch import nn

from engine.nets.mlp import MLP
from engine.probes import functional_dimension

ROOT = Path(__file__).resolve().parents[1]
DEPTHS = (1, 2, 3, 4, 5)
WIDTH_PANEL = "width (input dimension = width)"
INPUT_PANEL = "input dimension (width 8)"
PANELS = {WIDTH_PANEL: "width", INPUT_PANEL: "n0"}


def random_mlp(n0: int, width: int, depth: int, seed: int, init: str) -> MLP:
    """An MLP with one output, re-initialised from its own generator."""
    gen = torch.Generator().manual_seed(seed)
    model = MLP(n0, width, depth, 1)
    with torch.no_grad():
        for m in model.modules():
            if not isinstance(m, nn.Linear):
                continue
            if init == "he":
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / m.in_features))
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.1)
            else:  # PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases
                bound = 1.0 / math.sqrt(m.in_features)
                m.weight.copy_((torch.rand(m.weight.shape, generator=gen) * 2 - 1) * bound)
                m.bias.copy_((torch.rand(m.bias.shape, generator=gen) * 2 - 1) * bound)
    return model


def measure(n0: int, width: int, depth: int, seed: int, *, init: str, oversample: float,
            max_oversample: float, max_inputs: int) -> dict:
    """Rank on ``oversample * #parameters`` normal inputs; while short of the bound and still rising, double the batch.

    Every batch's rank is a lower bound on the functional dimension, and a larger batch
    holding the smaller one never ranks lower, so the doubling stops at the first batch that
    adds nothing (or at ``max_oversample`` inputs per parameter, or ``max_inputs``).
    """
    model = random_mlp(n0, width, depth, seed, init)
    params = dict(model.named_parameters())
    n_params = sum(p.numel() for p in model.parameters())
    gen = torch.Generator().manual_seed(10**6 + seed)
    x = torch.randn(math.ceil(oversample * n_params), n0, generator=gen)
    r = functional_dimension(model, params, x)
    first = r.rank
    while r.has_hidden_symmetries and 2 * len(x) <= min(max_oversample * n_params, max_inputs):
        x = torch.cat([x, torch.randn(len(x), n0, generator=gen)])  # (2m, n0): the old batch and as many new
        grown = functional_dimension(model, params, x)
        if grown.rank == r.rank:
            break
        r = grown
    return {"n0": n0, "width": width, "depth": depth, "seed": seed, "n_params": n_params, "rank": r.rank,
            "first_rank": first, "bound": r.symmetry_bound, "deficit": r.symmetry_bound - r.rank,
            "full": r.rank == r.symmetry_bound, "n_inputs": len(x)}


def sweep(inits: int, init: str, oversample: float, max_oversample: float, max_inputs: int, log) -> pd.DataFrame:
    cells = [(WIDTH_PANEL, w, w) for w in (3, 5, 8, 12)] + [(INPUT_PANEL, n0, 8) for n0 in (1, 2, 4, 8)]
    done: dict[tuple, dict] = {}  # (n0, width, depth, seed): a network shared by both panels is measured once
    rows = []
    for panel, n0, width in cells:
        for depth in DEPTHS:
            for seed in range(inits):
                key = (n0, width, depth, seed)
                if key not in done:
                    done[key] = measure(n0, width, depth, seed, init=init, oversample=oversample,
                                        max_oversample=max_oversample, max_inputs=max_inputs)
                rows.append({"panel": panel, **done[key]})
            cell = pd.DataFrame(rows[-inits:])
            log(f"{panel:<34} n0={n0:<3} width={width:<3} depth={depth}  params={cell['n_params'].iloc[0]:<5} "
                f"P(no hidden)={cell['full'].mean():.2f}  mean deficit={cell['deficit'].mean():6.2f}  "
                f"(first batch: P={(cell['first_rank'] == cell['bound']).mean():.2f}; "
                f"inputs/param up to {(cell['n_inputs'] / cell['n_params']).max():.0f})")
    return pd.DataFrame(rows)


def check_trends(table: pd.DataFrame) -> list[str]:
    """Spearman correlation of the proportion with each knob, over the cells of its sweep.

    Depth is checked over all cells of a sweep; width and input dimension within depths 2
    and 3, where the proportion is neither 1 for every level (depth 1) nor 0 (depth >= 4).
    """
    p = table.groupby(["panel", "n0", "width", "depth"])["full"].mean().reset_index()
    lines = []
    for panel in PANELS:
        part = p[p["panel"] == panel]
        rho = spearmanr(part["depth"], part["full"]).statistic
        lines.append(f"{'PASS' if rho < 0 else 'FAIL'}  falls with depth: Spearman rho = {rho:+.2f} over "
                     f"{len(part)} cells ({panel})")
    for panel, knob in PANELS.items():
        for depth in (2, 3):
            part = p[(p["panel"] == panel) & (p["depth"] == depth)]
            rho = spearmanr(part[knob], part["full"]).statistic
            values = ", ".join(f"{v:.2f}" for v in part.sort_values(knob)["full"])
            lines.append(f"{'PASS' if rho > 0 else 'FAIL'}  rises with {knob} at depth {depth}: Spearman rho = "
                         f"{rho:+.2f} ({values})")
    return lines


def table_text(table: pd.DataFrame) -> str:
    """P(no hidden symmetries) per panel: rows = knob level, columns = depth."""
    out = []
    for panel, knob in PANELS.items():
        part = table[table["panel"] == panel]
        grid = part.pivot_table(index=knob, columns="depth", values="full", aggfunc="mean")
        out.append(f"{panel}: P(no hidden symmetries), rows {knob}, columns depth\n{grid.round(2).to_string()}")
    return "\n\n".join(out)


def write_figure(table: pd.DataFrame, path: Path, init: str, inits: int) -> None:
    from engine.figures import hidden_symmetry_probability_figure
    from engine.figures.export import write_image

    title = (f"No hidden symmetries at random initialisation ({inits} nets per point, "
             f"{'He-normal' if init == 'he' else 'PyTorch default'} init)")
    fig = hidden_symmetry_probability_figure(table, PANELS, title=title)
    fig.update_layout(width=1000, height=440)
    os.environ.setdefault("BROWSER_PATH", "/usr/bin/chromium")
    write_image(fig, path, scale=1.5)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inits", type=int, default=25, help="random networks per (width, input dim, depth)")
    ap.add_argument("--oversample", type=float, default=2.0, help="inputs per parameter in the first batch")
    ap.add_argument("--max-oversample", type=float, default=32.0, help="at most this many inputs per parameter")
    ap.add_argument("--max-inputs", type=int, default=4096, help="and at most this many inputs")
    ap.add_argument("--init", choices=["he", "torch"], default="he")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "functional_dimension.txt")
    ap.add_argument("--figure", type=Path, default=ROOT / "assets" / "functional_dimension.png")
    args = ap.parse_args()
    lines: list[str] = []

    def log(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    log(f"functional dimension of random ReLU MLPs: {args.inits} inits per cell, {args.init} init, "
        f"{args.oversample:g}x inputs per parameter doubled up to {args.max_oversample:g}x (at most "
        f"{args.max_inputs} inputs) while the rank grows, "
        f"torch threads {torch.get_num_threads()}, "
        f"{os.cpu_count()} CPUs")
    load0, wall, cpu0 = os.getloadavg()[0], time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    table = sweep(args.inits, args.init, args.oversample, args.max_oversample, args.max_inputs, log)
    wall = time.perf_counter() - wall
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    log("")
    log(table_text(table))
    log("")
    for line in check_trends(table):
        log(line)
    log(f"\n{table[['n0', 'width', 'depth', 'seed']].drop_duplicates().shape[0]} networks measured; "
        f"wall {wall:.1f} s, CPU {cpu:.1f} s, load average {load0:.1f} -> {os.getloadavg()[0]:.1f}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    write_figure(table, args.figure, args.init, args.inits)
    print(f"wrote {args.out} and {args.figure}")


if __name__ == "__main__":
    main()
