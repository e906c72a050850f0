"""Variable importance cloud: vectorized over members vs scikit-learn in a Python loop.

500 logistic-regression members of a Rashomon set on breast_cancer (30 standardized
features), sampled around the optimum with the Hessian ellipsoid (relative ε = 0.05,
exact loss filter). The vectorized cloud (all members stacked, one batched forward
per permutation and feature chunk) is compared with a loop over members calling
``sklearn.inspection.permutation_importance`` on an equivalent ``LogisticRegression``,
same permutations (random_state), same accuracy scorer. Prints medians, the ratio
and the largest difference between the two sets of values.

    .venv/bin/python bench/rashomon_importance.py [--members 500] [--repeats 5] [--trials 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from torch import nn

from engine.probes.rashomon import sample_rashomon_set, variable_importance_cloud


class BinaryLogit(nn.Module):
    """Logistic regression with logits [0, w·x + b] (identifiable, unlike Linear(D, 2))."""

    def __init__(self, d: int):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(d, dtype=torch.float64))
        self.bias = nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x):
        z = x @ self.weight + self.bias
        return torch.stack([torch.zeros_like(z), z], dim=-1)


def members(n_members: int, seed: int = 0):
    x, y = load_breast_cancer(return_X_y=True)
    x = (x - x.mean(0)) / x.std(0)
    c = 1.0
    opt = LogisticRegression(C=c, max_iter=5000).fit(x, y)
    model = BinaryLogit(x.shape[1])
    params = {"weight": torch.tensor(opt.coef_[0]), "bias": torch.tensor(opt.intercept_[0])}
    l2 = 1.0 / (2 * c * len(x))  # sklearn's penalty, per sample
    sample = sample_rashomon_set(model, params, (torch.tensor(x), torch.tensor(y)), epsilon=0.05,
                                 mode="relative", n_samples=4 * n_members, seed=seed, l2=l2)
    if sample.thetas.shape[0] < n_members:
        raise SystemExit(f"only {sample.thetas.shape[0]} members accepted; raise n_samples")
    stacked = {k: v[:n_members].double() for k, v in sample.stacked_params(torch.float64).items()}
    ests = []
    for m in range(n_members):
        est = LogisticRegression()
        est.classes_ = np.array([0, 1])
        est.coef_ = stacked["weight"][m].numpy()[None, :]
        est.intercept_ = np.array([float(stacked["bias"][m])])
        ests.append(est)
    return model, stacked, ests, x, y, sample.acceptance_rate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=5, help="permutation repeats (n_repeats)")
    ap.add_argument("--trials", type=int, default=3, help="timed trials of the vectorized cloud")
    ap.add_argument("--sklearn-trials", type=int, default=1)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, stacked, ests, x, y, acc_rate = members(args.members)
    data = (torch.tensor(x), torch.tensor(y))
    variable_importance_cloud(model, {k: v[:8] for k, v in stacked.items()}, data, n_repeats=1)  # warm-up
    vec_times, sk_times = [], []
    for _ in range(args.trials):
        t0 = time.perf_counter()
        cloud = variable_importance_cloud(model, stacked, data, n_repeats=args.repeats, seed=0)
        vec_times.append(time.perf_counter() - t0)
    for _ in range(args.sklearn_trials):
        t0 = time.perf_counter()
        ref = np.stack([permutation_importance(e, x, y, n_repeats=args.repeats, random_state=0).importances
                        for e in ests])
        sk_times.append(time.perf_counter() - t0)
    diff = float(np.abs(cloud.importances - ref).max())
    vec, sk = statistics.median(vec_times), statistics.median(sk_times)
    lines = [
        f"variable importance cloud: {args.members} members x {x.shape[1]} features x {args.repeats} repeats, "
        f"breast_cancer ({x.shape[0]} samples), torch threads {args.threads}",
        f"members: Hessian-ellipsoid sample, relative eps 0.05, acceptance rate {acc_rate:.3f}",
        f"vectorized (engine)            median {vec:8.3f} s over {args.trials} trials",
        f"sklearn permutation_importance median {sk:8.3f} s over {args.sklearn_trials} trials (loop over members)",
        f"ratio sklearn / vectorized     {sk / vec:8.1f}x   (target >= 10x)",
        f"max |difference| of importances {diff:.2e} (same permutations, same accuracy scorer)",
    ]
    text = "\n".join(lines)
    print(text)
    out = Path(__file__).parent / "results" / "rashomon_importance.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
