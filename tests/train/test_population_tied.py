"""Population training keeps tied weights tied (GPT-2's lm_head is its token embedding).

``copy.deepcopy(model).to("meta")`` gives every name its own parameter; the population's
functional model then read ``lm_head.weight`` — left out of the stacked parameters, which
hold each shared tensor once — as uninitialised memory: a loss of 1.9e16 at step 0 now and then.
"""

from __future__ import annotations

import copy

import pytest

from engine.config import ArchSpec, TrainSpec
from engine.nets import build
from engine.train import train_run
from engine.train.population import _retie, train_population

transformers = pytest.importorskip("transformers")
GPT2 = {"factory": "transformers:GPT2LMHeadModel", "output": "logits",
        "kwargs": {"config": {"vocab_size": 16, "n_positions": 16, "n_embd": 16, "n_layer": 1, "n_head": 2,
                              "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0}}}


def test_the_meta_copy_is_retied():
    model = build(ArchSpec.model_validate(GPT2), (16,), 16, vocab_size=16, seed=0)
    base = _retie(model, copy.deepcopy(model).to("meta"))
    assert base.lm_head.weight is base.transformer.wte.weight
    assert base.lm_head.weight.device.type == "meta"


def test_a_population_of_tied_models_equals_the_runs_trained_alone():
    specs = [TrainSpec.model_validate({"dataset": {"name": "markov"}, "arch": GPT2, "batch_size": 8, "steps": 2,
                                       "checkpoints": [0, 2], "loss": "token_cross_entropy", "seed": seed,
                                       "optim": {"name": "adamw", "lr": 1e-3}}) for seed in (0, 1)]
    together = train_population(specs)
    for spec, pop in zip(specs, together):
        alone = train_run(spec)
        assert pop.status == alone.status == "done"
        for key, value in alone.metrics.items():
            assert pop.metrics[key] == pytest.approx(value, rel=1e-4, abs=1e-5), key
