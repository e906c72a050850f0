"""The layout of the public model zoos of Schürholt et al. (2022), as Ray Tune writes a trial per model.

What the published zoos hold (the ``ModelZoos/ModelZooDataset`` repository: its zoo generators,
``def_NN_experiment.py`` and ``dataset_base.py``; zoos on Zenodo, Ray Tune 1.8):

- the zoo folder holds one folder per trial (model), e.g.
  ``NN_tune_trainable_9e2ad_00000_0_seed=1_2021-10-19_12-49-46/``, next to the experiment's own
  ``config.json``, ``readme.md`` and a pickled ``dataset.pt`` (never read here);
- a trial holds ``params.json``: the trial's hyperparameters, flat keys with ``::`` namespaces
  (``model::type`` = "CNN", ``model::channels_in``, ``model::nlin``, ``model::dropout``,
  ``model::init_type``, ``optim::optimizer``, ``optim::lr``, ``optim::wd``, ``seed``,
  ``training::batchsize``, ``training::epochs_train``, ...);
- ``result.json``: JSON lines, one per epoch, with ``train_loss``, ``train_acc``, ``test_loss``,
  ``test_acc`` and Ray's bookkeeping (``training_iteration``, ``time_this_iter_s``, ``date``,
  ``config``, ...). The first line measures the untrained model: its train metrics are ``-999``
  (a placeholder, left out here);
- ``checkpoint_<N>/`` per epoch (``checkpoint_000003`` or ``checkpoint_3``; ``checkpoint_0`` is the
  initialisation) holding ``checkpoints``, a ``torch.save``'d state dict (pickled: loaded here only
  with ``torch.load(weights_only=True)``), and ``optimizer`` (not read). Epoch ``N`` pairs with the
  result line whose ``training_iteration`` is ``N``.

Their CNNs (``module_list.0.weight`` ...) and ResNet-18s are not Zooscope's built-ins: the
command line names what builds the model (``--factory module:callable --kwargs JSON``, or a
built-in ``--arch``) and every trial is checked against it. Each trial becomes one run (its
``params.json`` its hyperparameter columns, its ``seed`` the run's seed), every epoch a
checkpoint at step ``N``, and every ``result.json`` value a metric row.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from engine.bounds import (
    MAX_CHECKPOINTS,
    MAX_HPARAMS,
    MAX_NAME_LENGTH,
    MAX_OPTION_TEXT,
    MAX_RUNS,
    SEED_MAX,
    check_name,
    short_repr,
)
from engine.config import ArchSpec, DatasetSpec

from .folder import WEIGHT_SUFFIXES, CheckpointFile, check_inside, read_side_json
from .metrics_file import MetricTable, read_metrics
from .trajectory import Trajectory, build_for, check_trajectory

__all__ = ["FORMATS", "check_modelzoo", "flatten_params", "trial_folders"]

FORMATS = ("modelzoo",)
_CHECKPOINT_DIR = re.compile(r"^checkpoint_(\d{1,9})$")
# Ray Tune's own keys in result.json: bookkeeping, not measurements of the model.
RAY_KEYS = frozenset({
    "training_iteration", "time_this_iter_s", "time_total_s", "time_since_restore", "timestamp", "date", "done",
    "pid", "hostname", "node_ip", "config", "trial_id", "experiment_id", "experiment_tag", "episodes_total",
    "timesteps_total", "timesteps_since_restore", "iterations_since_restore", "should_checkpoint",
    "warmup_time", "checkpoint_dir_name"})
_NOT_MEASURED = -999.0


def trial_folders(zoo_dir: Path) -> list[Path]:
    """Every sub-folder of ``zoo_dir`` holding a ``params.json``, by name; at most ``MAX_RUNS``."""
    if not zoo_dir.is_dir():
        raise ValueError(f"{zoo_dir} is not a folder; import-zoo takes the folder that holds the trial folders")
    trials = []
    for entry in sorted(zoo_dir.iterdir()):
        if entry.is_dir() and not entry.name.startswith(".") and (entry / "params.json").is_file():
            check_inside([entry.name] if not entry.resolve().is_relative_to(zoo_dir.resolve()) else [], zoo_dir)
            trials.append(entry)
            if len(trials) > MAX_RUNS:
                raise ValueError(f"{zoo_dir} holds more than {MAX_RUNS} trial folders; one zoo may have at most "
                                 f"{MAX_RUNS} runs (engine.bounds.MAX_RUNS): split it into several zoos")
    if not trials:
        raise ValueError(f"{zoo_dir} holds no trial folders (a sub-folder with params.json, result.json and "
                         "checkpoint_<N>/ folders, as Ray Tune writes them); is this the zoo's folder?")
    return trials


def flatten_params(params: dict, prefix: str = "") -> dict[str, Any]:
    """``params.json`` as flat hyperparameter columns: scalars kept, nested objects joined with '.',
    lists and long text cut to :data:`~engine.bounds.MAX_OPTION_TEXT` characters of their JSON."""
    flat: dict[str, Any] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        check_name(name, f"params.json hyperparameter {short_repr(name)}")  # a column name on every page
        if isinstance(value, dict):
            flat |= flatten_params(value, f"{name}.")
        elif value is None or isinstance(value, bool | int | float):
            flat[name] = value
        else:
            text = value if isinstance(value, str) else short_repr(value, MAX_OPTION_TEXT)
            flat[name] = text[:MAX_OPTION_TEXT]
        if len(flat) > MAX_HPARAMS:
            raise ValueError(f"params.json holds more than {MAX_HPARAMS} hyperparameters; a trial's hyperparameters "
                             "are the columns of its zoo's table")
    return flat


def _trial_checkpoints(trial: Path) -> list[CheckpointFile]:
    files = []
    for entry in sorted(trial.iterdir()):
        m = _CHECKPOINT_DIR.match(entry.name)
        if not (m and entry.is_dir()):
            continue
        weights = entry / "checkpoints"
        if not weights.is_file():
            found = [p for p in entry.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES]
            if len(found) != 1:
                raise ValueError(f"{trial.name}/{entry.name} holds no 'checkpoints' file (the zoos' state dict) "
                                 "and not exactly one weights file; is this a model-zoo trial?")
            weights = found[0]
        epoch = int(m.group(1))
        files.append(CheckpointFile(weights, f"{trial.name}/{entry.name}/{weights.name}", epoch, float(epoch)))
        if len(files) > MAX_CHECKPOINTS:
            raise ValueError(f"trial {trial.name} holds more than {MAX_CHECKPOINTS} checkpoint folders; one run "
                             f"may have at most {MAX_CHECKPOINTS} (engine.bounds.MAX_CHECKPOINTS)")
    root = trial.resolve()
    check_inside([f.name for f in files if not f.path.resolve().is_relative_to(root)], trial)
    steps = [f.step for f in files]
    dup = sorted({s for s in steps if steps.count(s) > 1})
    if dup:
        raise ValueError(f"trial {trial.name} has two checkpoint folders for epoch {dup[0]} "
                         "(e.g. checkpoint_3 and checkpoint_000003); keep one")
    if not files:
        raise ValueError(f"trial {trial.name} holds no checkpoint_<N>/ folders; nothing to import for it")
    return sorted(files, key=lambda f: f.step)


def _trial_seed(params: dict, trial: Path) -> int:
    seed = params.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        raise ValueError(f"trial {trial.name}: params.json has seed {short_repr(seed)}; a seed is an integer in "
                         f"[0, {SEED_MAX}]")
    return seed


def _check_trial(trial: Path, arch: ArchSpec, dataset: DatasetSpec, model) -> Trajectory:
    params = read_side_json(trial / "params.json", "params.json of trial")
    if not isinstance(params, dict):
        raise ValueError(f"trial {trial.name}: params.json must hold a JSON object; got {short_repr(params)}")
    try:
        hparams = flatten_params(params)
    except ValueError as exc:
        raise ValueError(f"trial {trial.name}: {exc}") from None
    files = _trial_checkpoints(trial)
    result = trial / "result.json"
    table = (read_metrics(result, step_key="training_iteration", skip=RAY_KEYS, drop_value=_NOT_MEASURED)
             if result.is_file() else MetricTable(str(result)))
    return check_trajectory(trial.name[:MAX_NAME_LENGTH], files, arch, dataset, source=trial, table=table,
                            hparams=hparams, seed=_trial_seed(params, trial), model=model)


def check_modelzoo(zoo_dir: str | Path, arch: ArchSpec, dataset: DatasetSpec) -> list[Trajectory]:
    """Every trial of a zoo checked against ``arch``; ``ValueError`` naming each trial that does not fit
    (all of them are checked, and nothing is written)."""
    zoo_dir = Path(zoo_dir)
    trials = trial_folders(zoo_dir)
    model = build_for(arch, dataset)[1]
    checked, problems = [], []
    for trial in trials:
        try:
            checked.append(_check_trial(trial, arch, dataset, model))
        except ValueError as exc:
            problems.append(str(exc))
    if problems:
        shown = "\n".join(f"- {p}" for p in problems[:5])
        more = f"\n- … and {len(problems) - 5} more trials" if len(problems) > 5 else ""
        raise ValueError(f"{len(problems)} of {len(trials)} trials of {zoo_dir} cannot be imported; nothing was "
                         f"written:\n{shown}{more}")
    return checked
