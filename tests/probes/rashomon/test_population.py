"""Per-model scores and explanation clouds over groups of models (engine.probes.rashomon.population)."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.func import stack_module_state

from engine.probes.rashomon import (
    ModelGroup,
    explanation_clouds,
    feature_interaction_cloud,
    model_class,
    model_scores,
    variable_importance_cloud,
)


def test_scores_agree_with_a_loop_over_models():
    gen = torch.Generator().manual_seed(0)
    out = torch.randn(5, 40, 3, generator=gen)  # (M, N, C)
    y = torch.randint(0, 3, (40,), generator=gen)
    scores = model_scores(out, y)
    for m in range(5):
        assert scores.loss[m] == pytest.approx(F.cross_entropy(out[m].double(), y).item(), rel=1e-12)
        assert scores.error[m] == pytest.approx((out[m].argmax(-1) != y).double().mean().item())
    assert scores.loss.dtype == np.float64 and scores.probs.shape == (5, 40, 3)
    np.testing.assert_allclose(scores.probs.sum(-1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(scores.probs.argmax(-1), out.argmax(-1).numpy())


def test_regression_scores_are_mean_squared_errors_without_classes():
    gen = torch.Generator().manual_seed(1)
    out, y = torch.randn(3, 20, 2, generator=gen), torch.randn(20, 2, generator=gen)
    scores = model_scores(out, y)
    assert scores.error is None and scores.probs is None
    for m in range(3):
        assert scores.loss[m] == pytest.approx(F.mse_loss(out[m].double(), y.double()).item(), rel=1e-12)


def _population(n_models=6, d=4, n=120):
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = (x[:, 0] - x[:, 2] > 0).long()
    models = [model_class("logistic", d, 2, seed=s).double() for s in range(n_models)]
    stacked, _ = stack_module_state(models)
    return models[0], {k: v.detach() for k, v in stacked.items()}, (x, y)


def test_clouds_do_not_depend_on_how_the_population_is_grouped():
    model, stacked, data = _population()
    names = ["a", "b", "c", "d"]
    one = explanation_clouds([ModelGroup(model, stacked, np.arange(6))], data, n_models=6, feature_names=names,
                             n_repeats=2, fis_features=3, seed=0)
    idx = [np.array([0, 3, 5]), np.array([1, 2, 4])]  # interleaved: rows must go back to their models
    groups = [ModelGroup(model, {k: v[i] for k, v in stacked.items()}, i) for i in idx]
    two = explanation_clouds(groups, data, n_models=6, feature_names=names, n_repeats=2, fis_features=3, seed=0)
    np.testing.assert_allclose(one[0].mean, two[0].mean, atol=1e-12)
    np.testing.assert_allclose(one[0].importances, two[0].importances, atol=1e-12)
    np.testing.assert_allclose(one[1].fis, two[1].fis, atol=1e-12)
    np.testing.assert_array_equal(one[1].pairs, two[1].pairs)


def test_clouds_equal_the_single_group_functions_and_pick_the_most_important_pairs():
    model, stacked, data = _population()
    progress = []
    vic, fis = explanation_clouds([ModelGroup(model, stacked, np.arange(6))], data, n_models=6,
                                  feature_names=["a", "b", "c", "d"], n_repeats=2, fis_features=2, seed=3,
                                  on_progress=lambda f, m: progress.append((f, m)))
    direct = variable_importance_cloud(model, stacked, data, n_repeats=2, seed=3, metric="loss")
    np.testing.assert_allclose(vic.importances, direct.importances, atol=1e-12)
    np.testing.assert_array_equal(vic.mcr_max, vic.mean.max(0))
    top = sorted(np.argsort(-vic.mean.mean(0), kind="stable")[:2].tolist())
    assert fis.pairs.tolist() == [top]  # the two features with the largest mean importance
    inter = feature_interaction_cloud(model, stacked, data, pairs=fis.pairs, n_repeats=2, seed=3, metric="loss")
    np.testing.assert_allclose(fis.fis, inter.fis, atol=1e-12)
    assert vic.metric == fis.metric == "loss" and vic.feature_names == ("a", "b", "c", "d")
    assert [f for f, _ in progress] == [0.0, 0.5] and all(0 <= f < 1 for f, _ in progress)


def test_one_feature_has_no_pairs():
    gen = torch.Generator().manual_seed(4)
    x = torch.randn(50, 1, generator=gen, dtype=torch.float64)
    y = (x[:, 0] > 0).long()
    model = model_class("logistic", 1, 2).double()
    stacked = {k: v.detach()[None] for k, v in model.named_parameters()}
    vic, fis = explanation_clouds([ModelGroup(model, stacked, np.arange(1))], (x, y), n_models=1,
                                  feature_names=["x"], n_repeats=2)
    assert vic.mean.shape == (1, 1) and fis.pairs.shape == (0, 2) and fis.fis.shape == (1, 0)
