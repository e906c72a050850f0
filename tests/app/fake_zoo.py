"""A large zoo written straight through the store API, with no training: a fixture for load times.

The rows are real rows (runs from a validated sweep, checkpoints, metrics), but the numbers
are synthetic curves, so nothing built on this zoo may be shown as a result.
"""

from __future__ import annotations

from uuid import uuid4

import numpy as np
import pandas as pd

import store
from engine.config import SweepSpec

__all__ = ["FAKE_SWEEP", "seed_fake_zoo"]

# 5 widths x 5 learning rates x 8 seeds = 200 runs.
FAKE_SWEEP = {
    "name": "fake-200",
    "base": {"dataset": {"name": "mnist1d"}, "arch": {"name": "mlp", "depth": 2}, "optim": {"name": "sgd"},
             "steps": 1000, "batch_size": 100, "checkpoints": "log:6"},
    "grid": {"width": [16, 32, 64, 128, 256], "lr": [0.001, 0.003, 0.01, 0.03, 0.1], "seed": list(range(8))},
}
CHECKPOINT_STEPS = [0, 4, 16, 63, 251, 1000]
BATCH_STEPS = list(range(0, 1001, 10))  # a batch loss every 1% of the steps, as the trainer reports it


def _curve(steps: np.ndarray, start: float, end: float, tau: float) -> np.ndarray:
    return end + (start - end) * np.exp(-steps / tau)


def seed_fake_zoo(st: store.Store, sweep: dict = FAKE_SWEEP, *, seed: int = 0) -> str:
    """Write a finished zoo of ``sweep``'s runs with synthetic curves into ``st``; returns its zoo id.

    Per run: 6 checkpoints (train/test loss and accuracy) and the matching metric rows, plus
    101 batch-loss rows; 200 runs give 1,200 checkpoints and 24,999+ metric rows.
    """
    spec = SweepSpec.model_validate(sweep)
    rng = np.random.default_rng(seed)
    zoo_id = st.create_zoo(spec.name, spec.model_dump(mode="json"), owner="bench")
    runs, checkpoints, metrics = [], [], []
    for run in spec.expand():
        hp = spec.hyperparameters(run)
        run_id = uuid4().hex
        runs.append({"run_id": run_id, "zoo_id": zoo_id, "config": run.model_dump(mode="json"), "hparams": hp,
                     "seed": run.seed, "status": "done", "owner": "bench", "device": "cpu",
                     "wall_s": float(rng.uniform(5, 15)), "name": " ".join(f"{k}={v}" for k, v in hp.items())})
        tau = 30.0 / (hp["lr"] * 100) ** 0.5  # faster learning at higher lr
        final = 0.35 + 0.4 / np.log2(hp["width"]) + rng.normal(0, 0.02)
        steps = np.array(CHECKPOINT_STEPS, dtype=float)
        curves = {("train", "loss"): _curve(steps, 2.3, final * 0.8, tau),
                  ("test", "loss"): _curve(steps, 2.3, final, tau)}
        curves[("train", "acc")] = 1.0 - curves[("train", "loss")] / 2.6
        curves[("test", "acc")] = 1.0 - curves[("test", "loss")] / 2.6
        for i, step in enumerate(CHECKPOINT_STEPS):
            checkpoints.append({"checkpoint_id": uuid4().hex, "run_id": run_id, "step": step,
                                "epoch": step * 100 / 4000, "train_loss": curves[("train", "loss")][i],
                                "train_acc": curves[("train", "acc")][i], "test_loss": curves[("test", "loss")][i],
                                "test_acc": curves[("test", "acc")][i]})
            metrics += [{"run_id": run_id, "step": step, "split": split, "name": name, "value": float(v[i])}
                        for (split, name), v in curves.items()]
        batch = _curve(np.array(BATCH_STEPS, float), 2.3, final * 0.8, tau) + rng.normal(0, 0.03, len(BATCH_STEPS))
        metrics += [{"run_id": run_id, "step": s, "split": "batch", "name": "loss", "value": float(v)}
                    for s, v in zip(BATCH_STEPS, batch)]
    st.add_runs(runs)
    # Checkpoints in bulk, the way a worker hands them over: one result bundle, ingested by the owner.
    created = pd.Timestamp.now(tz="UTC").tz_localize(None)
    store.write_bundle(st.path, f"seed-{zoo_id}", {"checkpoint": pd.DataFrame(checkpoints).assign(created_at=created)})
    report = st.ingest_bundles()
    assert not report.failed, report.failed
    st.add_metrics(pd.DataFrame(metrics))
    return zoo_id
