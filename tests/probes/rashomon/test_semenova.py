"""Semenova, Rudin & Parr (2022), qualitatively: where simple and flexible model classes
reach similar test accuracy, the Rashomon ratio of a small MLP class is large; where
they do not, it is (near) zero. The same experiment with more samples is
bench/rashomon_semenova.py, whose table is in the README.
"""

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.tree import DecisionTreeClassifier
from torch import nn

from engine.probes.rashomon import rashomon_ratio


def _data(kind, n, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(n, 2))
    if kind == "noisy-linear":
        y = (x[:, 0] + 0.25 * x[:, 1] + 0.35 * rng.normal(size=n) > 0).astype(int)
    else:  # XOR with 5% label noise
        y = ((x[:, 0] * x[:, 1]) > 0).astype(int)
        y = np.where(rng.random(n) < 0.05, 1 - y, y)
    return x, y


def _experiment(kind):
    (xtr, ytr), (xte, yte) = _data(kind, 300, 0), _data(kind, 1000, 1)
    mlp = MLPClassifier((4,), max_iter=3000, random_state=0).fit(xtr, ytr)
    acc = {"logistic regression": LogisticRegression().fit(xtr, ytr).score(xte, yte),
           "tree (depth 2)": DecisionTreeClassifier(max_depth=2, random_state=0).fit(xtr, ytr).score(xte, yte),
           "MLP 2-4-2": mlp.score(xte, yte)}
    model = nn.Sequential(nn.Linear(2, 4), nn.Tanh(), nn.Linear(4, 2)).double()
    ratio = rashomon_ratio(model, dict(model.named_parameters()), (torch.tensor(xtr), torch.tensor(ytr)),
                           epsilon=0.05, mode="absolute", half_width=5.0, optimum_loss=1 - mlp.score(xtr, ytr),
                           metric="error", n_samples=8000, seed=0)
    return acc, ratio


def test_large_rashomon_ratio_where_simple_models_do_as_well():
    acc_easy, easy = _experiment("noisy-linear")
    acc_hard, hard = _experiment("xor")
    assert max(acc_easy.values()) - min(acc_easy.values()) < 0.03  # similar test accuracy
    assert max(acc_hard.values()) - min(acc_hard.values()) > 0.2  # logistic regression fails on XOR
    assert easy.ratio > 0.005  # ~1% of a 22-parameter box is within 0.05 error of the best
    assert easy.ratio - hard.ratio > 4 * easy.standard_error
    assert easy.mode == "absolute" and easy.kind == "monte_carlo"
