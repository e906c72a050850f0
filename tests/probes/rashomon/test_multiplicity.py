"""Predictive multiplicity on hand-made prediction vectors (engine.probes.rashomon.multiplicity)."""

import numpy as np
import pytest
import torch
from torch import nn
from torch.func import stack_module_state

from engine.probes.rashomon import (
    member_probabilities,
    most_contested,
    multiplicity_curve,
    predictive_multiplicity,
)

# 4 members, 5 samples; reference = [0, 0, 1, 1, 0]
PREDS = np.array([
    [0, 0, 1, 1, 0],  # flips nothing
    [1, 0, 1, 1, 0],  # flips sample 0
    [1, 1, 1, 1, 0],  # flips samples 0, 1
    [0, 0, 1, 0, 0],  # flips sample 3
])
REF = np.array([0, 0, 1, 1, 0])


def test_hand_computed_ambiguity_discrepancy_and_shares():
    r = predictive_multiplicity(PREDS, REF)
    assert r.ambiguity == pytest.approx(3 / 5)  # samples 0, 1, 3 flipped by someone
    assert r.discrepancy == pytest.approx(2 / 5)  # member 2 flips two samples
    np.testing.assert_allclose(r.flip_rate, [0, 0.2, 0.4, 0.2])
    assert r.flipped.tolist() == [True, True, False, True, False]
    np.testing.assert_allclose(r.class_shares[:, 1], [0.5, 0.25, 1.0, 0.75, 0.0])
    np.testing.assert_allclose(r.disagreement, [0.5, 0.25, 0.0, 0.25, 0.0])
    assert r.probability_range is None
    assert most_contested(r, 1).tolist() == [0]


def test_probabilities_give_labels_and_ranges():
    probs = np.array([[[0.9, 0.1], [0.4, 0.6]],
                      [[0.6, 0.4], [0.3, 0.7]],
                      [[0.2, 0.8], [0.35, 0.65]]])  # (M=3, N=2, C=2)
    r = predictive_multiplicity(probs, [0, 1])
    assert r.ambiguity == pytest.approx(0.5) and r.discrepancy == pytest.approx(0.5)
    np.testing.assert_allclose(r.probability_range, [0.7, 0.1])
    assert most_contested(r, 2).tolist() == [0, 1]


def test_curve_matches_direct_computation_at_each_epsilon():
    rng = np.random.default_rng(0)
    losses = rng.uniform(0.2, 0.4, size=30)
    preds = rng.integers(0, 3, size=(30, 40))
    eps = [0.0, 0.1, 0.3, 1.0]
    curve = multiplicity_curve(losses, preds, eps, mode="relative")
    best = int(losses.argmin())
    for e, amb, dis, size in zip(eps, curve.ambiguity, curve.discrepancy, curve.sizes):
        members = losses <= losses.min() * (1 + e)
        direct = predictive_multiplicity(preds[members], preds[best], n_classes=3)
        assert (amb, dis, size) == (pytest.approx(direct.ambiguity),
                                    pytest.approx(direct.discrepancy), members.sum())


def test_multiplicity_errors():
    with pytest.raises(ValueError, match="reference has 4 samples but predictions have 5"):
        predictive_multiplicity(PREDS, REF[:4])
    with pytest.raises(ValueError, match=r"got shape \(5,\)"):
        predictive_multiplicity(REF, REF)
    with pytest.raises(ValueError, match="predictions have 4 models but losses 3"):
        multiplicity_curve([0.1, 0.2, 0.3], PREDS, [0.1])


def test_member_probabilities_match_each_model():
    models = [nn.Linear(3, 2) for _ in range(3)]
    params = {k: v.detach() for k, v in stack_module_state(models)[0].items()}
    x = torch.randn(7, 3)
    probs = member_probabilities(models[0], params, x, chunk=3)
    assert probs.shape == (3, 7, 2)
    np.testing.assert_allclose(probs[1], torch.softmax(models[1](x), -1).detach().numpy(), atol=1e-6)
    r = predictive_multiplicity(probs, probs[0].argmax(-1))
    assert r.flip_rate[0] == 0.0
