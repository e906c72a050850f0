"""Validated specifications: datasets, architectures, optimisers, runs and sweeps.

Every spec is a frozen pydantic model, validated once at the boundary (a form, a
TOML/YAML file, the CLI) so the engine below can trust its inputs. The validated
spec is stored with every result so a run can be reproduced from its row.

Specs are pure: this module imports nothing from the engine. Whether a dataset or
architecture *name* is registered is checked where the registries are
(:func:`engine.data.check_dataset_name`, :func:`engine.nets.check_architecture_name`),
for a whole run or sweep by :func:`engine.train.check_registered`, which every
boundary that queues work calls.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "ArchSpec",
    "ConfigError",
    "DatasetSpec",
    "OptimSpec",
    "SweepSpec",
    "TrainSpec",
    "checkpoint_steps",
    "PhaseAxes",
    "format_validation_error",
    "load_sweep",
    "parse_axis_expression",
    "spec_hash",
]

Scalar = int | float | str | bool


class ConfigError(ValueError):
    """A spec or config file that cannot be used, with a message a person can act on."""


class _Spec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


class DatasetSpec(_Spec):
    """Which data, how much of it and how it is corrupted."""

    name: str = "mnist1d"  # a registered dataset (engine.data), or "npz" / "csv" / "parquet" for user files
    seed: int = Field(0, ge=0)  # generation, split and label-noise seed
    train_fraction: float = Field(1.0, gt=0.0, le=1.0)  # keep this share of the training split
    label_noise: float = Field(0.0, ge=0.0, lt=1.0)  # share of training labels replaced at random
    test_size: float = Field(0.25, gt=0.0, lt=1.0)  # held-out share when the source has no split
    path: str | None = None  # user file (npz/csv/parquet)
    label: str | None = None  # label column of a user table
    options: dict[str, Scalar] = Field(default_factory=dict)  # dataset-specific knobs (e.g. p for modular)


class ArchSpec(_Spec):
    """An architecture from the registry with its size knobs."""

    name: str = "mlp"  # mlp, cnn1d, cnn2d, resnet, transformer or a registered factory (engine.nets)
    width: int = Field(64, ge=1, le=65536)  # hidden units / channels / model dimension
    depth: int = Field(2, ge=1, le=64)  # hidden layers / blocks
    init_scale: float = Field(1.0, gt=0.0, le=100.0)  # multiplies the default initialisation
    options: dict[str, Scalar] = Field(default_factory=dict)  # e.g. batchnorm=true, heads=4


class OptimSpec(_Spec):
    """A first-order optimiser; the same update is used by single and population training."""

    name: Literal["sgd", "momentum", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0.0, le=100.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)  # used by "momentum"
    weight_decay: float = Field(0.0, ge=0.0, le=10.0)  # L2 for sgd/momentum, decoupled for adamw
    betas: tuple[float, float] = (0.9, 0.999)  # used by "adamw"
    eps: float = Field(1e-8, gt=0.0)

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        for b in v:
            if not 0.0 <= b < 1.0:
                raise ValueError(f"each beta must be in [0, 1); got {b}")
        return v


_SCHEDULE = re.compile(r"^(linear|log):(\d+)$")


def _check_schedule(value: str | list[int]) -> str | list[int]:
    if isinstance(value, list):
        if not value or any(s < 0 for s in value):
            raise ValueError(f"explicit checkpoint steps must be a non-empty list of steps >= 0; got {value}")
        return sorted(set(value))
    m = _SCHEDULE.match(value)
    if not m or int(m.group(2)) < 1:
        raise ValueError(f"checkpoint schedule must be 'linear:N', 'log:N' (N >= 1) or a list of steps; got {value!r}")
    return value


class TrainSpec(_Spec):
    """One training run: everything needed to reproduce it."""

    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    arch: ArchSpec = Field(default_factory=ArchSpec)
    optim: OptimSpec = Field(default_factory=OptimSpec)
    batch_size: int = Field(128, ge=1, le=1_000_000)
    steps: int = Field(1000, ge=1, le=10_000_000)  # optimiser steps
    seed: int = Field(0, ge=0)  # initialisation and data order
    checkpoints: str | list[int] = "log:8"  # 'linear:N', 'log:N' or explicit steps
    eval_size: int = Field(2048, ge=1)  # at most this many samples per split for checkpoint metrics
    device: Literal["auto", "cpu", "cuda"] = "auto"

    _v_checkpoints = field_validator("checkpoints")(classmethod(lambda cls, v: _check_schedule(v)))

    @model_validator(mode="after")
    def _steps_cover_checkpoints(self) -> TrainSpec:
        if isinstance(self.checkpoints, list) and max(self.checkpoints) > self.steps:
            raise ValueError(f"checkpoint step {max(self.checkpoints)} is past the last step ({self.steps})")
        return self

    def checkpoint_steps(self) -> list[int]:
        return checkpoint_steps(self.checkpoints, self.steps)


def checkpoint_steps(schedule: str | list[int], steps: int) -> list[int]:
    """Steps at which to checkpoint; always includes step 0 (init) and the last step.

    ``linear:N`` gives N evenly spaced checkpoints after init, ``log:N`` N log-spaced ones.
    """
    if isinstance(schedule, list):
        return sorted({0, steps, *schedule})
    kind, n = schedule.split(":")
    n = int(n)
    if kind == "linear":
        pts = {round(steps * i / n) for i in range(1, n + 1)}
    else:
        pts = {round(steps ** (i / n)) for i in range(1, n + 1)}
    return sorted({0, steps, *(min(max(p, 1), steps) for p in pts)})


# Sweep axes: grid key -> (spec section, field). "seed" sets the run seed.
SWEEP_AXES: dict[str, tuple[str | None, str]] = {
    "width": ("arch", "width"),
    "depth": ("arch", "depth"),
    "init_scale": ("arch", "init_scale"),
    "lr": ("optim", "lr"),
    "weight_decay": ("optim", "weight_decay"),
    "momentum": ("optim", "momentum"),
    "batch_size": (None, "batch_size"),
    "train_fraction": ("dataset", "train_fraction"),
    "label_noise": ("dataset", "label_noise"),
    "seed": (None, "seed"),
}


_AXIS_EXPRESSION = re.compile(r"^\s*([A-Za-z_]+)\s*(?:([/*])\s*([A-Za-z_]+)\s*)?$")


def parse_axis_expression(text: str) -> tuple[str, str | None, str | None]:
    """``"lr"`` -> ``("lr", None, None)``; ``"lr/batch_size"`` -> ``("lr", "/", "batch_size")``.

    A phase-diagram axis is one sweep axis, or the ratio or product of two.

    Raises
    ------
    ValueError
        Not of the form ``a``, ``a/b`` or ``a*b``, or a name that is not a sweep axis.
    """
    m = _AXIS_EXPRESSION.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"a phase axis is a sweep axis, or 'a/b' or 'a*b' of two; got {text!r}")
    first, op, second = m.groups()
    for name in (first, second):
        if name is not None and name not in SWEEP_AXES:
            raise ValueError(f"phase axis {text!r} names {name!r}, which is not a sweep axis; "
                             f"allowed: {', '.join(SWEEP_AXES)}")
    return first, op, second


class PhaseAxes(_Spec):
    """Which hyperparameters a phase diagram puts on its axes (Yang et al. 2021: temperature x load).

    Each is a sweep axis or the ratio / product of two, e.g. ``temperature = "lr/batch_size"``,
    ``load = "width"``. At least one name of each must be swept; another may be fixed in ``base``.
    """

    temperature: str  # e.g. "lr", "lr/batch_size", "batch_size"
    load: str  # e.g. "width", "train_fraction", "label_noise"

    @field_validator("temperature", "load")
    @classmethod
    def _parses(cls, text: str) -> str:
        parse_axis_expression(text)
        return text.strip()

    def names(self, which: str) -> list[str]:
        first, _, second = parse_axis_expression(getattr(self, which))
        return [n for n in (first, second) if n is not None]


class SweepSpec(_Spec):
    """A zoo: a base run and a grid of values; runs are the Cartesian product."""

    name: str = Field("zoo", min_length=1, max_length=200)
    base: TrainSpec = Field(default_factory=TrainSpec)
    grid: dict[str, list[Scalar]] = Field(default_factory=dict)
    temperature: list[str] = Field(default_factory=list)  # axes acting as temperature (phase diagrams)
    load: list[str] = Field(default_factory=list)  # axes acting as load
    phases: PhaseAxes | None = None  # [phases] temperature = "lr/batch_size", load = "width"

    @field_validator("grid")
    @classmethod
    def _grid_axes_known(cls, grid: dict[str, list[Scalar]]) -> dict[str, list[Scalar]]:
        for key, values in grid.items():
            if key not in SWEEP_AXES:
                raise ValueError(f"unknown sweep axis {key!r}; allowed: {', '.join(SWEEP_AXES)}")
            if not values:
                raise ValueError(f"sweep axis {key!r} has no values")
            if len(set(map(str, values))) != len(values):
                raise ValueError(f"sweep axis {key!r} repeats a value: {values}")
        return grid

    @model_validator(mode="after")
    def _runs_are_valid(self) -> SweepSpec:
        for axis in (*self.temperature, *self.load):
            if axis not in self.grid:
                raise ValueError(f"phase axis {axis!r} is not a sweep axis; grid has {sorted(self.grid)}")
        if self.phases is not None:
            for which in ("temperature", "load"):
                if not any(name in self.grid for name in self.phases.names(which)):
                    raise ValueError(f"phases.{which} = {getattr(self.phases, which)!r} names no swept axis; "
                                     f"the grid sweeps {sorted(self.grid)}")
        if self.n_runs > 10_000:
            raise ValueError(f"the sweep has {self.n_runs} runs; at most 10000 are allowed")
        self.expand()  # every grid value must make a valid TrainSpec
        return self

    @property
    def n_runs(self) -> int:
        n = 1
        for values in self.grid.values():
            n *= len(values)
        return n

    def expand(self) -> list[TrainSpec]:
        """All runs of the grid, in a stable order (last axis fastest)."""
        keys = list(self.grid)
        base = self.base.model_dump()
        runs = []
        for combo in itertools.product(*(self.grid[k] for k in keys)):
            cfg = json.loads(json.dumps(base))
            for key, value in zip(keys, combo):
                section, field = SWEEP_AXES[key]
                (cfg[section] if section else cfg)[field] = value
            try:
                runs.append(TrainSpec.model_validate(cfg))
            except ValidationError as exc:
                point = ", ".join(f"{k}={v}" for k, v in zip(keys, combo))
                raise ValueError(f"grid point ({point}) is invalid: {format_validation_error(exc)}") from None
        return runs

    def hyperparameters(self, run: TrainSpec) -> dict[str, Scalar]:
        """The swept values of one run, keyed by axis name."""
        out = {}
        for key in self.grid:
            section, field = SWEEP_AXES[key]
            out[key] = getattr(getattr(run, section) if section else run, field)
        return out


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``field.path: message (got value)``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "spec"
        msg = err["msg"].removeprefix("Value error, ")
        value = err.get("input")
        shown = "" if isinstance(value, dict) else f" (got {value!r})"
        lines.append(f"{loc}: {msg}{shown}")
    return "; ".join(lines)


def spec_hash(spec: BaseModel | dict[str, Any]) -> str:
    """A stable content hash of a spec (for probe keys and deduplication)."""
    payload = spec.model_dump(mode="json") if isinstance(spec, BaseModel) else spec
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def load_sweep(source: str | Path | dict[str, Any]) -> SweepSpec:
    """Load a sweep from a TOML/YAML file or a dict; raise :class:`ConfigError` on bad input.

    A file may hold a full sweep (``name``, ``base``, ``grid``) or a single run
    (``dataset``, ``arch``, ...) which becomes a one-run zoo.
    """
    if isinstance(source, dict):
        data, where = source, "config"
    else:
        path = Path(source)
        where = str(path)
        if not path.is_file():
            raise ConfigError(f"config file {where} does not exist")
        text = path.read_text()
        try:
            if path.suffix == ".toml":
                data = tomllib.loads(text)
            elif path.suffix in (".yaml", ".yml"):
                data = yaml.safe_load(text) or {}
            else:
                raise ConfigError(f"config file {where} must end in .toml, .yaml or .yml")
        except (tomllib.TOMLDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{where} is not valid {path.suffix[1:].upper()}: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a table of settings; got {type(data).__name__}")
    if "base" not in data and "grid" not in data and any(k in data for k in TrainSpec.model_fields):
        data = {"name": data.pop("name", "zoo"), "base": data}
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {format_validation_error(exc)}") from None
