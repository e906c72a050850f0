"""Helpers shared by the report tests (here and in tests/app): a small store written through the
store API (no training) and figures drawn by engine.figures from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import plotly.graph_objects as go

import store
from engine.config import SweepSpec
from engine.figures.zoo import phase_diagram, training_curves

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "tests" / "artifacts"
CHROMIUM = Path("/usr/bin/chromium")
XSS = "<script>alert(1)</script>"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--disable-dev-shm-usage"]

SWEEP = {"name": "small", "base": {"dataset": {"name": "moons"}, "arch": {"name": "mlp", "depth": 2, "width": 8},
                                   "optim": {"name": "sgd"}, "steps": 100, "batch_size": 32,
                                   "checkpoints": "linear:3"},
         "grid": {"lr": [0.05, 0.2], "seed": [0, 1]}}
STEPS = [0, 50, 100]


def seed_small_zoo(st: store.Store, *, xss_name: bool = True) -> dict:
    """A finished 4-run zoo with synthetic curves (not a result); the first run is named ``XSS``.

    Returns ``{"zoo_id", "run_ids", "checkpoint_ids" (last checkpoint per run)}``.
    """
    spec = SweepSpec.model_validate(SWEEP)
    zoo_id = st.create_zoo(spec.name, spec.model_dump(mode="json"), owner="tester")
    rng = np.random.default_rng(0)
    run_ids, last = [], []
    for i, run in enumerate(spec.expand()):
        hp = spec.hyperparameters(run)
        name = XSS if (i == 0 and xss_name) else f"lr={hp['lr']} seed={hp['seed']}"
        run_id = st.add_runs([{"zoo_id": zoo_id, "config": run.model_dump(mode="json"), "hparams": hp,
                               "seed": run.seed, "status": "done", "owner": "tester", "device": "cpu",
                               "wall_s": 1.0, "name": name}])[0]
        loss = 0.7 * np.exp(-np.array(STEPS) * hp["lr"] / 10) + rng.uniform(0.05, 0.1)
        for step, value in zip(STEPS, loss):
            ckpt = st.add_checkpoint(run_id, step, epoch=step / 30, train_loss=value * 0.9, test_loss=value,
                                     train_acc=1 - value / 2, test_acc=1 - value / 1.8)
        st.add_metrics([{"run_id": run_id, "step": s, "split": split, "name": "loss", "value": float(v * f)}
                        for s, v in zip(STEPS, loss) for split, f in (("train", 0.9), ("test", 1.0))])
        run_ids.append(run_id)
        last.append(ckpt)
    return {"zoo_id": zoo_id, "run_ids": run_ids, "checkpoint_ids": last}


def zoo_figures(st: store.Store, zoo_id: str) -> list[go.Figure]:
    """The Zoo page's training curves and phase diagram, and a WebGL surface, for this zoo."""
    runs = st.runs_table(zoo_id)
    curves = training_curves(st.metrics(runs["run_id"].tolist()), runs)
    phase = phase_diagram(runs, "hp_lr", "hp_seed", "final_test_loss")
    a = np.linspace(-1, 1, 15)
    surface = go.Figure(go.Surface(x=a, y=a, z=np.add.outer(a ** 2, a ** 2)))
    surface.update_layout(height=420, title="a bowl (WebGL)")
    return [curves, phase, surface]
