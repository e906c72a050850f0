"""What a logged run records about itself, validated before anything is written.

A logged run's ``config_json`` is TrainSpec-shaped, so every page and probe reads it
like a trained run's: the architecture (a built-in name with its knobs, or a factory
``"module:callable"`` with keyword arguments) and the dataset by name. Fields a
script does not tell (optimiser, batch size) keep TrainSpec's defaults and mean
nothing for a logged run (its ``origin`` is ``'logged'``); the script's own config
is recorded as the run's hyperparameters (``hparams_json``, the ``hp_*`` columns).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import math
import sys
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from engine.bounds import MAX_CHECKPOINTS, MAX_STEPS, SEED_MAX, check_name, short_repr
from engine.config import ArchSpec, DatasetSpec, TrainSpec, format_validation_error

__all__ = ["MAX_CONFIG_BYTES", "MAX_CONFIG_DEPTH", "built_by", "check_config", "logged_arch", "logged_dataset",
           "logged_train_spec", "metric_key"]

MAX_CONFIG_BYTES = 64 * 1024  # a script's config as JSON (an argparse namespace is a few hundred bytes)
MAX_CONFIG_DEPTH = 16
_SPLITS = ("train", "test", "val", "batch")


def check_config(config: Any) -> dict[str, Any]:
    """``config`` as a plain JSON object, or ValueError naming the first value that is not JSON.

    Keys are text; values are finite numbers, text, booleans, None, lists and objects of
    these, nested at most 16 deep and at most 64 KiB as JSON. NumPy/torch scalars are
    taken as their Python values.
    """
    if config is None:
        return {}
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a dict of JSON values (e.g. vars(args)); got {type(config).__name__} "
                         f"{short_repr(config)}")
    plain = _plain(config, "config", 0)
    size = len(json.dumps(plain))
    if size > MAX_CONFIG_BYTES:
        raise ValueError(f"config is {size} bytes as JSON; at most {MAX_CONFIG_BYTES} are allowed: record "
                         "hyperparameters, not data")
    return plain


def _plain(value: Any, where: str, depth: int) -> Any:
    if depth > MAX_CONFIG_DEPTH:
        raise ValueError(f"{where} is nested more than {MAX_CONFIG_DEPTH} levels deep")
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"{where} has a non-text key {short_repr(key)}; JSON keys are text")
            out[key] = _plain(item, f"{where}[{key!r}]", depth + 1)
        return out
    if isinstance(value, list | tuple):
        return [_plain(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value}; config values must be finite numbers")
        return value
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # a NumPy or torch scalar
        return _plain(value.item(), where, depth)
    raise ValueError(f"{where} holds {type(value).__name__} {short_repr(value)}; only JSON values (numbers, "
                     "text, booleans, None, lists, dicts) are allowed: convert it first, e.g. str(path)")


def logged_arch(arch: str | ArchSpec, arch_kwargs: Mapping[str, Any] | None = None, *,
                output: str | None = None) -> ArchSpec:
    """The architecture of a logged run as an :class:`~engine.config.ArchSpec`.

    ``arch`` is a factory import path ``"module:callable"`` (``arch_kwargs`` are its
    keyword arguments, ``output`` picks the logits from what forward returns), a
    built-in name such as ``"mlp"`` (``arch_kwargs`` are ArchSpec fields: width, depth,
    options), or an ArchSpec.
    """
    if isinstance(arch, ArchSpec):
        if arch_kwargs:
            raise ValueError("arch_kwargs is for an arch given by name or import path; an ArchSpec carries its own")
        return arch
    if not isinstance(arch, str):
        raise ValueError(f"arch must be a factory 'module:callable', a built-in architecture name or an ArchSpec; "
                         f"got {type(arch).__name__} {short_repr(arch)}")
    kwargs = dict(arch_kwargs or {})
    try:
        if ":" in arch:
            label = arch.rsplit(":", 1)[1].rsplit(".", 1)[-1]
            return ArchSpec(name=label, factory=arch, kwargs=kwargs, output=output)
        if output is not None:
            kwargs["output"] = output
        return ArchSpec(name=check_name(arch, "arch"), **kwargs)
    except ValidationError as exc:
        raise ValueError(f"arch {short_repr(arch)} with arch_kwargs {short_repr(kwargs)} is not usable: "
                         f"{format_validation_error(exc)}") from None


def logged_dataset(dataset: str | DatasetSpec) -> DatasetSpec:
    """The dataset of a logged run: a name (registered in engine.data or in the store) or a DatasetSpec.

    The name is not checked against a registry here: a dataset registered in the store is
    only known to the store's owner. The Zoo page says when probes cannot load it.
    """
    if isinstance(dataset, DatasetSpec):
        return dataset
    return DatasetSpec(name=check_name(dataset, "dataset"))


def logged_train_spec(arch: ArchSpec, dataset: DatasetSpec, *, steps: int = 1,
                      checkpoints: list[int] | None = None, seed: int | None = None) -> TrainSpec:
    """A TrainSpec-shaped record of a logged run (what probes rebuild the model and load data from)."""
    steps = min(max(1, int(steps)), MAX_STEPS)
    ckpts = sorted({s for s in (checkpoints or []) if 0 <= s <= steps})
    schedule: str | list[int] = ckpts if 0 < len(ckpts) <= MAX_CHECKPOINTS else "linear:1"
    seed = seed if isinstance(seed, int) and not isinstance(seed, bool) and 0 <= seed <= SEED_MAX else 0
    return TrainSpec(dataset=dataset, arch=arch, steps=steps, checkpoints=schedule, seed=seed)


def built_by(arch: ArchSpec) -> dict[str, Any]:
    """What code built the model: the factory, its kwargs and output adapter, or the built-in architecture.

    A factory whose module this process has imported already is hashed from its source
    file (``source_sha256``); nothing is imported for it.
    """
    if arch.factory is None:
        return {"builtin": arch.name, "width": arch.width, "depth": arch.depth, "options": dict(arch.options)}
    record: dict[str, Any] = {"factory": arch.factory, "kwargs": dict(arch.kwargs), "output": arch.output}
    module = sys.modules.get(arch.factory.split(":", 1)[0])
    try:
        path = inspect.getsourcefile(module) if module is not None else None
    except TypeError:  # a built-in module has no source file
        path = None
    if path:
        with open(path, "rb") as fh:
            record["source_sha256"] = hashlib.sha256(fh.read()).hexdigest()
    return record


def metric_key(key: str) -> tuple[str, str]:
    """``(split, name)`` of a keyword given to ``run.log``.

    ``train_loss`` -> ``("train", "loss")`` (also ``test_``, ``val_``, ``batch_``);
    a bare ``loss`` or ``acc`` is the training batch's -> ``("batch", ...)``; anything
    else (``lr``, ``grad_norm``) -> ``("log", key)``.
    """
    key = check_name(key, "metric name")
    split, _, name = key.partition("_")
    if split in _SPLITS and name:
        return split, name
    if key in ("loss", "acc"):
        return "batch", key
    return "log", key
