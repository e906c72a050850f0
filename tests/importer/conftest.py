"""Folders of checkpoints and model zoos written by the tests themselves (no download)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from engine import data as zdata
from engine import nets
from engine.cli import _parser
from engine.config import ArchSpec

MLP = ArchSpec(name="mlp", width=8, depth=2)


def mlp_states(n: int, *, width: int = 8, seed: int = 1, every: int = 10) -> list[dict[str, torch.Tensor]]:
    """``n`` states of a width-``width`` MLP on moons, ``every`` SGD steps apart (the first is the initialisation)."""
    ds = zdata.load("moons")
    model = nets.build(ArchSpec(name="mlp", width=width, depth=2), ds.input_shape, ds.n_outputs, seed=seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    states, g = [], torch.Generator().manual_seed(seed)
    for step in range(every * (n - 1) + 1):
        if step % every == 0:
            states.append({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()})
        idx = torch.randint(0, len(ds.x_train), (64,), generator=g)
        loss = torch.nn.functional.cross_entropy(model(ds.x_train[idx]), ds.y_train[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return states


def write_run_folder(folder: Path, n: int = 4, *, width: int = 8, seed: int = 1, every: int = 10) -> Path:
    """``folder/step_{0,10,...}.safetensors``: one MLP's trajectory."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, state in enumerate(mlp_states(n, width=width, seed=seed, every=every)):
        save_file(state, str(folder / f"step_{i * every}.safetensors"))
    return folder


def write_modelzoo(root: Path, n_trials: int = 3, n_epochs: int = 3, *, width: int = 8) -> Path:
    """A zoo in the layout of Schürholt et al.'s model zoos (Ray Tune trials), written here.

    Each trial: params.json (the zoos' namespaced keys), result.json (JSON lines with Ray's
    bookkeeping, -999 for the untrained epoch's train metrics) and checkpoint_00000N/checkpoints,
    a torch.save'd (pickled) state dict. Next to the trials, the experiment's config.json and a
    dataset.pt that is a pickle of arbitrary objects: never to be read.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text(json.dumps({"model::type": "CNN"}))
    torch.save({"trainset": [1, 2, 3], "fn": print}, root / "dataset.pt")
    for t in range(n_trials):
        seed = t + 1
        trial = root / f"NN_tune_trainable_9e2ad_{t:05d}_{t}_seed={seed}_2021-10-19_12-49-46"
        trial.mkdir()
        params = {"model::type": "CNN", "model::channels_in": 1, "model::nlin": "tanh", "model::dropout": 0.1 * t,
                  "model::init_type": "uniform", "optim::optimizer": "adam", "optim::lr": 0.0003, "seed": seed,
                  "training::batchsize": 10, "training::epochs_train": n_epochs - 1, "cuda": False,
                  "dataset::dump": "/data/zoos/MNIST/dataset.pt"}
        (trial / "params.json").write_text(json.dumps(params, indent=2))
        lines = []
        for e, state in enumerate(mlp_states(n_epochs, width=width, seed=seed, every=5)):
            ck = trial / f"checkpoint_{e:06d}"
            ck.mkdir()
            torch.save(state, ck / "checkpoints")
            torch.save({"state": {}, "param_groups": []}, ck / "optimizer")
            lines.append({"train_loss": -999 if e == 0 else 0.5 / e, "train_acc": -999 if e == 0 else 0.8,
                          "test_loss": 0.7 - 0.1 * e, "test_acc": 0.5 + 0.1 * e, "training_iteration": e,
                          "time_this_iter_s": 1.5, "done": False, "date": "2021-10-19_12-50-00",
                          "hostname": "node1", "config": params, "trial_id": f"9e2ad_{t:05d}"})
        (trial / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return root


def cli_args(*argv: str):
    """Parsed ``zooscope`` arguments, for calling a command function directly (errors raise)."""
    return _parser().parse_args(list(argv))


@pytest.fixture
def run_folder(tmp_path) -> Path:
    return write_run_folder(tmp_path / "mlp-run")


# Test modules import the helpers above as ``from importer_conftest import ...``: with several folders'
# conftests loaded, the name ``conftest`` means whichever came last (as tests/app/conftest.py notes).
sys.modules["importer_conftest"] = sys.modules[__name__]
