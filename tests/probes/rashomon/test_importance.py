"""Variable importance and interaction clouds (engine.probes.rashomon.importance)."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import stack_module_state

from engine.probes.rashomon import (
    feature_interaction_cloud,
    permutation_indices,
    stacked_forward,
    variable_importance_cloud,
)


class Formula(nn.Module):
    """y = a·x0 + b·x1 + c·x0·x1 (x2 unused); a, b, c are parameters."""

    def __init__(self, a=1.0, b=1.0, c=0.0):
        super().__init__()
        self.coef = nn.Parameter(torch.tensor([a, b, c], dtype=torch.float64))

    def forward(self, x):
        a, b, c = self.coef
        return (a * x[:, 0] + b * x[:, 1] + c * x[:, 0] * x[:, 1]).unsqueeze(-1)


def _stack(models):
    params, _ = stack_module_state(models)
    return {k: v.detach() for k, v in params.items()}


def _regression_data(n=2000, c=0.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=gen, dtype=torch.float64)
    y = Formula(1.0, 1.0, c)(x).detach()
    return x, y


def test_unused_feature_has_zero_importance_for_every_member():
    models = [Formula(a, b, 0.0) for a, b in [(1, 1), (0.5, 2), (2, 0.1)]]
    x, y = _regression_data()
    cloud = variable_importance_cloud(models[0], _stack(models), (x, y), metric="loss", n_repeats=3)
    assert cloud.mean.shape == (3, 3) and cloud.importances.shape == (3, 3, 3)
    np.testing.assert_array_equal(cloud.mean[:, 2], 0.0)
    assert np.all(cloud.mean[:, :2] > 0)
    np.testing.assert_array_equal(cloud.mcr_min, cloud.mean.min(0))
    # x1 matters more for the member with b = 2 than for the one with b = 0.1
    assert cloud.mean[1, 1] > cloud.mean[2, 1]


def test_fis_is_zero_for_additive_and_nonzero_for_product_terms():
    x, y_add = _regression_data(c=0.0)
    additive = feature_interaction_cloud(Formula(), _stack([Formula(1, 1, 0)]), (x, y_add),
                                         pairs=[(0, 1)], n_repeats=5)
    _, y_prod = _regression_data(c=1.5)
    product = feature_interaction_cloud(Formula(), _stack([Formula(1, 1, 1.5)]), (x, y_prod),
                                        pairs=[(0, 1)], n_repeats=5)
    scale = product.single[0, :2].mean()
    assert abs(additive.fis[0, 0]) < 0.05 * scale
    assert abs(product.fis[0, 0]) > 0.3 * scale
    assert product.pair_labels() == ["x0 × x1"]


def test_fis_matches_explicit_definition_and_default_pairs():
    x, y = _regression_data(n=300, c=0.7)
    models = [Formula(1, 1, 0.7), Formula(0.8, 1.2, 0.2)]
    inter = feature_interaction_cloud(models[0], _stack(models), (x, y), n_repeats=2, seed=4)
    assert inter.pairs.tolist() == [[0, 1], [0, 2], [1, 2]]
    # slow obvious reference: loop over members, pairs and repeats
    perms = permutation_indices(len(x), 2, seed=4)
    for m, model in enumerate(models):
        base = ((model(x) - y) ** 2).mean()
        def phi(cols, perm, model=model, base=base):
            xp = x.clone()
            xp[:, cols] = x[perm][:, cols]
            return float(((model(xp) - y) ** 2).mean() - base)

        @torch.no_grad()
        def fis(i, j, q):
            return phi([i, j], q) - phi([i], q) - phi([j], q)
        for p, (i, j) in enumerate(inter.pairs):
            want = np.mean([fis(i, j, q) for q in perms])
            assert inter.fis[m, p] == pytest.approx(want, abs=1e-10)


def test_accuracy_importance_equals_scikit_learn_permutation_importance():
    from sklearn.inspection import permutation_importance
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 4))
    y = (x[:, 0] - 0.5 * x[:, 1] + 0.3 * rng.normal(size=150) > 0).astype(int)
    members = []
    for c in (0.01, 0.1, 1.0):
        members.append(LogisticRegression(C=c).fit(x, y))
    models = []
    for est in members:
        lin = nn.Linear(4, 2).double()
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(np.vstack([np.zeros(4), est.coef_[0]])))
            lin.bias.copy_(torch.tensor([0.0, est.intercept_[0]]))
        models.append(lin)
    cloud = variable_importance_cloud(models[0], _stack(models), (torch.tensor(x), torch.tensor(y)),
                                      n_repeats=4, seed=7)
    for m, est in enumerate(members):
        ref = permutation_importance(est, x, y, n_repeats=4, random_state=7)
        np.testing.assert_allclose(cloud.importances[m], ref.importances, atol=1e-12)


def test_stacked_forward_and_errors():
    models = [nn.Linear(3, 2) for _ in range(4)]
    params = _stack(models)
    x = torch.randn(5, 3)
    out = stacked_forward(models[0], params, x)
    torch.testing.assert_close(out[2], models[2](x).detach())
    y = torch.zeros(5, dtype=torch.long)
    with pytest.raises(ValueError, match="metric must be 'accuracy' or 'loss'; got 'auc'"):
        variable_importance_cloud(models[0], params, (x, y), metric="auc")
    with pytest.raises(ValueError, match=r"tabular inputs of shape \(N, D\); got \(5, 1, 3\)"):
        variable_importance_cloud(models[0], params, (x[:, None], y))
    with pytest.raises(ValueError, match="distinct feature index pairs"):
        feature_interaction_cloud(models[0], params, (x, y), pairs=[(1, 1)])
    with pytest.raises(ValueError, match="needs integer class targets"):
        variable_importance_cloud(models[0], params, (x, torch.zeros(5, 2)), metric="accuracy")
    with pytest.raises(ValueError, match="n_repeats must be >= 1; got 0"):
        permutation_indices(5, 0)
