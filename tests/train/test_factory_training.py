"""A transformers ResNet built from a config trains through engine.train, alone and as a population."""

from __future__ import annotations

import pytest
import torch
from user_models_fixtures import RESNET

from engine.config import TrainSpec
from engine.train import check_registered, train_population, train_run

pytestmark = pytest.mark.usefixtures("one_thread")


def _spec(seed: int = 0) -> TrainSpec:
    return TrainSpec.model_validate({
        "dataset": {"name": "digits"}, "seed": seed, "steps": 8, "batch_size": 32, "checkpoints": [4],
        "optim": {"name": "adamw", "lr": 0.01}, "eval_size": 256,
        "arch": RESNET})


def _train(spec: TrainSpec):
    states = {}
    result = train_run(spec, on_checkpoint=lambda run, step, epoch, state, metrics:
                       states.update({step: (state, metrics)}))
    return result, states


def test_resnet_from_config_trains_a_few_steps():
    spec = _spec()
    check_registered(spec)
    result, states = _train(spec)
    assert result.status == "done" and sorted(states) == [0, 4, 8]
    (init, m0), (last, m8) = states[0], states[8]
    assert set(init) == set(last) and any(k.endswith("running_mean") for k in init)  # BN statistics travel
    assert not torch.equal(init["classifier.1.weight"], last["classifier.1.weight"])
    assert all(torch.isfinite(torch.tensor(v)) for v in m8.values())
    assert m8["train_loss"] < m0["train_loss"]  # adamw at lr 0.01 moves a 1k-parameter net downhill in 8 steps


def test_population_matches_single_runs():
    specs = [_spec(0), _spec(1)]
    finals = {}
    train_population(specs, on_checkpoint=lambda run, step, epoch, state, metrics:
                     finals.__setitem__((run, step), metrics))
    _, alone = _train(specs[1])
    assert finals[(1, 8)]["train_loss"] == pytest.approx(alone[8][1]["train_loss"], rel=1e-4)
