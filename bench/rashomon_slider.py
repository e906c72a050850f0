"""ε-slider update on 10,000 stored members: target ≤ 100 ms.

What one slider move costs on the Rashomon page, measured piece by piece on 10,000
synthetic members (losses and hard predictions on 500 held-out samples):

- membership: ``rashomon_set`` (threshold, mask, members sorted by loss);
- the size and multiplicity readouts, read from curves computed once per dataset
  (``rashomon_curve`` and ``multiplicity_curve`` over 200 ε values, timed too);
- ``predictive_multiplicity`` of the members at that ε (per-sample disagreement);
- building the loss-vs-model scatter figure.

A naive reference (a Python loop over the members testing the condition) is run
side by side for the membership step. Prints medians and ratios to the 100 ms budget.

    .venv/bin/python bench/rashomon_slider.py [--members 10000] [--samples 500] [--trials 20]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from engine.figures.rashomon import rashomon_scatter
from engine.probes.rashomon import multiplicity_curve, predictive_multiplicity, rashomon_curve, rashomon_set

BUDGET = 0.100


def timed(fn, trials):
    times = []
    for _ in range(trials):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=10_000)
    ap.add_argument("--samples", type=int, default=500)
    ap.add_argument("--trials", type=int, default=20)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    losses = 0.2 + rng.gamma(2.0, 0.02, size=args.members)
    truth = rng.integers(0, 2, size=args.samples)
    flip = rng.random((args.members, args.samples)) < (losses[:, None] - 0.15)
    preds = np.where(flip, 1 - truth, truth).astype(np.int8)
    eps = 0.1
    eps_grid = np.linspace(0, 1, 200)

    def naive():
        best = min(losses)
        return [i for i, v in enumerate(losses) if v <= best * (1 + eps)]

    t_naive, _ = timed(naive, args.trials)
    t_set, rs = timed(lambda: rashomon_set(losses, epsilon=eps, mode="relative"), args.trials)
    t_curves, _ = timed(lambda: (rashomon_curve(losses, eps_grid),
                                 multiplicity_curve(losses, preds, eps_grid)), max(3, args.trials // 5))
    t_mult, _ = timed(lambda: predictive_multiplicity(preds[rs.indices], preds[rs.indices[0]], n_classes=2),
                      args.trials)
    t_fig, _ = timed(lambda: rashomon_scatter(losses, epsilon=eps, mode="relative"), max(3, args.trials // 4))
    update = t_set + t_mult + t_fig
    rows = [
        ("membership rashomon_set", t_set),
        ("naive Python loop (reference)", t_naive),
        (f"per-sample multiplicity of {rs.size} members", t_mult),
        ("scatter figure build (10k points)", t_fig),
        ("slider update = membership + multiplicity + figure", update),
        ("curves over 200 eps (once per dataset, not per move)", t_curves),
    ]
    lines = [f"eps-slider update: {args.members} members, {args.samples} held-out samples, relative eps {eps}, "
             f"{rs.size} members in the set; medians over {args.trials} trials"]
    lines += [f"{name:<54} {t * 1e3:9.2f} ms   {t / BUDGET:6.3f} x budget" for name, t in rows]
    lines.append(f"membership: naive loop / rashomon_set = {t_naive / t_set:.1f}x; "
                 f"update within the 100 ms budget: {'yes' if update <= BUDGET else 'NO'}")
    text = "\n".join(lines)
    print(text)
    out = Path(__file__).parent / "results" / "rashomon_slider.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
