"""Semenova, Rudin & Parr (2022), qualitatively, on two 2-D problems.

Test accuracy of logistic regression, a depth-2 tree and a 2-4-2 MLP, and the Monte
Carlo Rashomon ratio of the 2-4-2 MLP class (weights uniform in [-5, 5]^22, 0-1 training
error, absolute ε = 0.05 above the trained MLP's error), with its standard error.
Where the three classes reach similar accuracy (noisy linear boundary) the ratio is
large; on XOR, where they differ, it is ~0. Prints the README table.

    .venv/bin/python bench/rashomon_semenova.py [--samples 50000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.tree import DecisionTreeClassifier
from torch import nn

from engine.probes.rashomon import rashomon_ratio


def data(kind: str, n: int, seed: int):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 2))
    if kind == "noisy linear":
        y = (x[:, 0] + 0.25 * x[:, 1] + 0.35 * rng.normal(size=n) > 0).astype(int)
    else:
        y = ((x[:, 0] * x[:, 1]) > 0).astype(int)
        y = np.where(rng.random(n) < 0.05, 1 - y, y)
    return x, y


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=50_000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    lines = ["| data | logistic regression | tree (depth 2) | MLP 2-4-2 | Rashomon ratio of MLP 2-4-2 "
             "(absolute ε 0.05, 0-1 error) |", "|---|---|---|---|---|"]
    for kind in ("noisy linear", "XOR"):
        (xtr, ytr), (xte, yte) = data(kind, 300, 0), data(kind, 1000, 1)
        mlp = MLPClassifier((4,), max_iter=3000, random_state=0).fit(xtr, ytr)
        accs = [LogisticRegression().fit(xtr, ytr).score(xte, yte),
                DecisionTreeClassifier(max_depth=2, random_state=0).fit(xtr, ytr).score(xte, yte),
                mlp.score(xte, yte)]
        model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 2)).double()
        t0 = time.perf_counter()
        r = rashomon_ratio(model, dict(model.named_parameters()), (torch.tensor(xtr), torch.tensor(ytr)),
                           epsilon=0.05, mode="absolute", half_width=5.0, optimum_loss=1 - mlp.score(xtr, ytr),
                           metric="error", n_samples=args.samples, seed=0)
        dt = time.perf_counter() - t0
        lines.append(f"| {kind} | {accs[0]:.3f} | {accs[1]:.3f} | {accs[2]:.3f} | "
                     f"{r.ratio:.4f} ± {r.standard_error:.4f} ({r.n_members}/{r.n_samples}, {dt:.1f} s) |")
    text = "\n".join(lines)
    print(text)
    out = Path(__file__).parent / "results" / "rashomon_semenova.txt"
    out.parent.mkdir(exist_ok=True)
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
