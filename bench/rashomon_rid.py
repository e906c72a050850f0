"""Reproduction: the Rashomon importance distribution on Chen's process, for sparse trees and
for logistic regression, timed.

Data: ``rid_chen`` (engine.data), 1000 draws of X1..X10 ~ U(-2.5, 2.5) with
Y = 1[-2 sin(X1) + max(X2, 0) + X3 + exp(-X4) >= 2.048] (the train split, 750 rows, is
resampled): only X1..X4 matter. RID (Donnelly et al. 2023) over B bootstrap resamples of

- sparse decision trees: TreeFARMS on each resample (continuous features split at 3 quantiles,
  lambda = 0.01, depth budget 4, members within 5 % of the optimum objective);
- logistic regression: refitted on each resample, its Rashomon set (relative eps = 0.05 of the
  cross-entropy + 1e-3 ||theta||^2) sampled in the Hessian ellipsoid and filtered.

Importance is model reliance measured on the resample, as a rise in 0-1 error (a drop in
accuracy) for both, so the boxes share one axis. Checks the paper's claim on this process:
every noise feature's RID sits at ~0 and every relevant one clearly above. Prints a table,
the time each took and the load average (the machine is shared), writes
bench/results/rashomon_rid.txt and the README figure assets/rid_chen.png.

    BROWSER_PATH=/usr/bin/chromium .venv/bin/python bench/rashomon_rid.py [--bootstraps 10] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine import data as zdata
from engine.figures.rashomon import rid_figure
from engine.probes.rashomon import (
    SampledSets,
    TreeSets,
    fit_optimum,
    quantile_thresholds,
    rashomon_importance_distribution,
)

ROOT = Path(__file__).resolve().parents[1]
RELEVANT, IRRELEVANT = slice(0, 4), slice(4, 10)


def _timed(label, fn):
    load0, t0, c0 = os.getloadavg()[0], time.perf_counter(), time.process_time()
    out = fn()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    return out, f"{label}: {wall:.1f} s wall, {cpu:.1f} s CPU, load average {load0:.1f} -> {os.getloadavg()[0]:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstraps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    ds = zdata.load({"name": "rid_chen", "options": {"n_samples": 1000}})
    x, y, names = ds.x_train.double(), ds.y_train, ds.feature_names
    trees = TreeSets(regularization=0.01, rashomon_multiplier=0.05, depth_budget=4,
                     thresholds=quantile_thresholds(x.numpy(), 3), n_repeats=3)
    rid_trees, t_trees = _timed("sparse trees", lambda: rashomon_importance_distribution(
        (x, y), trees, n_bootstraps=args.bootstraps, seed=args.seed, feature_names=names))
    model = nn.Linear(x.shape[1], 2).double()
    start = fit_optimum(model, (x, y), l2=1e-3, steps=500)
    logistic = SampledSets(model, start, epsilon=0.05, n_samples=300, l2=1e-3, n_repeats=3, metric="accuracy")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # floored flat Hessian directions (reported by the probe)
        rid_log, t_log = _timed("logistic regression", lambda: rashomon_importance_distribution(
            (x, y), logistic, n_bootstraps=args.bootstraps, seed=args.seed, feature_names=names))
    lines = [f"RID on rid_chen ({len(x)} train rows, {args.bootstraps} bootstrap resamples, seed {args.seed}, "
             f"{args.threads} torch threads)", t_trees, t_log, "",
             f"{'feature':8} {'trees P>0':>10} {'trees 5/50/95 %':>24} {'logit P>0':>10} {'logit 5/50/95 %':>24}"]
    qt, ql = rid_trees.quantile([0.05, 0.5, 0.95]), rid_log.quantile([0.05, 0.5, 0.95])
    for j, name in enumerate(names):
        lines.append(f"{name:8} {rid_trees.prob_above[j]:10.2f} {' / '.join(f'{v:.3f}' for v in qt[:, j]):>24} "
                     f"{rid_log.prob_above[j]:10.2f} {' / '.join(f'{v:.3f}' for v in ql[:, j]):>24}")
    lines.append(f"set sizes per resample: trees {rid_trees.set_sizes.tolist()}, logistic {rid_log.set_sizes.tolist()}")
    for label, r in (("trees", rid_trees), ("logistic", rid_log)):
        q = r.quantile([0.05, 0.5, 0.95])
        noise_top, relevant_median = q[2, IRRELEVANT].max(), q[1, RELEVANT]
        top4 = sorted((np.argsort(-r.mean)[:4] + 1).tolist())
        lines.append(f"{label}: largest 95 % quantile of a noise feature {noise_top:.4f}; medians of X1..X4 "
                     f"{np.round(relevant_median, 4).tolist()}; top-4 by mean {top4}")
    text = "\n".join(lines)
    print(text)
    (ROOT / "bench" / "results").mkdir(exist_ok=True)
    (ROOT / "bench" / "results" / "rashomon_rid.txt").write_text(text + "\n")
    fig = rid_figure({"sparse trees (TreeFARMS)": rid_trees, "logistic regression (sampled)": rid_log},
                     order="input", title="RID on Chen's process: only X1-X4 decide the label")
    fig.update_xaxes(title="model reliance: rise in 0-1 error when the feature is permuted")
    from engine.figures.export import write_image

    write_image(fig, ROOT / "assets" / "rid_chen.png", width=900, height=620, scale=1.5)


if __name__ == "__main__":
    main()
