"""``evaluate`` (core domain): loss and accuracy of checkpoints on a chosen split and sample size."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from engine.bounds import MAX_EVAL_SIZE
from engine.config import SPEC_CONFIG, Seed
from engine.probes.core import evaluate_points, flatten_params, resolve_data

from ..probe_kinds import ProbeResult, register_probe


class EvaluateParams(BaseModel):
    model_config = SPEC_CONFIG

    split: Literal["train", "test"] = "test"
    n_samples: int | None = Field(None, ge=1, le=MAX_EVAL_SIZE)  # all samples of the split when None
    bn: Literal["running", "batch"] = "running"
    seed: Seed = 0  # which subsample, when n_samples is set


def run_evaluate(inputs, params: EvaluateParams, progress) -> ProbeResult:
    losses, accs = [], []
    for i in range(len(inputs)):
        ck = inputs.load(i)
        xy = resolve_data(ck.dataset, params.split, n_samples=params.n_samples, seed=params.seed)
        theta, layout = flatten_params(ck.params)
        loss, acc = evaluate_points(ck.model, theta[None], xy, bn=params.bn, buffers=ck.buffers, layout=layout,
                                    loss_fn=ck.loss_fn)
        losses.append(float(loss[0]))
        accs.append(float(acc[0]))
        progress((i + 1) / len(inputs), f"checkpoint {i + 1}/{len(inputs)}")
    return ProbeResult({"split": params.split, "bn": params.bn, "loss": losses, "accuracy": accs},
                       {"loss": np.asarray(losses), "accuracy": np.asarray(accs)})


register_probe("evaluate", run_evaluate, EvaluateParams, description="loss and accuracy on a split")
