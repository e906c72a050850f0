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
import math
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.bounds import (
    MAX_BATCH_SIZE,
    MAX_CHECKPOINTS,
    MAX_DEPTH,
    MAX_EVAL_SIZE,
    MAX_OPTION_TEXT,
    MAX_RUNS,
    MAX_STEPS,
    MAX_SWEEP_FILE_BYTES,
    MAX_WIDTH,
    SEED_MAX,
    check_name,
    printable,
    short_repr,
)

__all__ = [
    "ArchSpec",
    "ConfigError",
    "DatasetSpec",
    "OptimSpec",
    "SweepSpec",
    "TrainSpec",
    "checkpoint_steps",
    "PhaseAxes",
    "SPEC_CONFIG",
    "Seed",
    "format_validation_error",
    "load_sweep",
    "parse_axis_expression",
    "spec_hash",
]



def _finite(value: Any) -> Any:
    """Refuse NaN and infinity before a union of types tries each of its members on them."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"must be a finite number; got {value}")
    return value


Scalar = Annotated[int | float | str | bool, BeforeValidator(_finite)]
# A seed every consumer accepts (see engine.bounds.SEED_MAX).
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
# A value of a dataset's / architecture's options: checked further by the loader that takes it.
OptionValue = Annotated[int | float | Annotated[str, Field(max_length=MAX_OPTION_TEXT)] | bool,
                        BeforeValidator(_finite)]
Options = Annotated[dict[Annotated[str, Field(max_length=100)], OptionValue], Field(max_length=64)]

# Every spec (and every probe's parameters): immutable, no unknown keys, no NaN or infinity.
SPEC_CONFIG = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


_DOTTED_NAME = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
_FACTORY_PATTERN = rf"^{_DOTTED_NAME}:{_DOTTED_NAME}$"
_OUTPUT_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,99}$|^[0-9]{1,3}$"
MAX_FACTORY_LENGTH = 200  # "package.module:callable"
MAX_KWARGS_BYTES = 16 * 1024  # a factory's kwargs, as JSON (a transformers config fits in ~2 KiB)


def _json_object(value: Any) -> dict[str, Any]:
    """A JSON object of finite numbers, strings, bools, None, lists and objects, at most 16 KiB as JSON."""
    if not isinstance(value, dict):
        raise ValueError(f"must be a table of keyword arguments; got {short_repr(value)}")

    def walk(v: Any, depth: int) -> None:
        if depth > 16:
            raise ValueError("is nested more than 16 levels deep")
        if isinstance(v, dict):
            for k, item in v.items():
                if not isinstance(k, str):
                    raise ValueError(f"has a non-string key {short_repr(k)}")
                walk(item, depth + 1)
        elif isinstance(v, list | tuple):
            for item in v:
                walk(item, depth + 1)
        elif isinstance(v, float):
            _finite(v)
        elif v is not None and not isinstance(v, str | int | bool):
            raise ValueError(f"holds {type(v).__name__} {short_repr(v)}; only JSON values are allowed")

    walk(value, 0)
    size = len(json.dumps(value))
    if size > MAX_KWARGS_BYTES:
        raise ValueError(f"is {size} bytes as JSON; at most {MAX_KWARGS_BYTES} are allowed")
    return value


JsonObject = Annotated[dict[str, Any], BeforeValidator(_json_object)]


class ConfigError(ValueError):
    """A spec or config file that cannot be used, with a message a person can act on."""


class _Spec(BaseModel):
    model_config = SPEC_CONFIG

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), sort_keys=True)


class DatasetSpec(_Spec):
    """Which data, how much of it and how it is corrupted."""

    # a built-in dataset (engine.data), one registered in the store (`zooscope datasets add`), or a user
    # file read from path: "npz" / "csv" / "parquet" tables, "imagefolder" / "images" images
    name: str = "mnist1d"
    seed: Seed = 0  # generation, split and label-noise seed
    train_fraction: float = Field(1.0, gt=0.0, le=1.0)  # keep this share of the training split
    label_noise: float = Field(0.0, ge=0.0, lt=1.0)  # share of training labels replaced at random
    test_size: float = Field(0.25, gt=0.0, lt=1.0)  # held-out share when the source has no split
    path: str | None = Field(None, max_length=MAX_OPTION_TEXT)  # user file or image folder (admins, with sign-in on)
    label: str | None = Field(None, max_length=MAX_OPTION_TEXT)  # label column of a user table
    options: Options = Field(default_factory=dict)  # dataset-specific knobs (e.g. p for modular)


class ArchSpec(_Spec):
    """An architecture from the registry with its size knobs."""

    name: str = "mlp"  # mlp, cnn1d, cnn2d, resnet, transformer or a registered factory (engine.nets)
    width: int = Field(64, ge=1, le=MAX_WIDTH)  # hidden units / channels / model dimension
    depth: int = Field(2, ge=1, le=MAX_DEPTH)  # hidden layers / blocks
    init_scale: float = Field(1.0, gt=0.0, le=100.0)  # multiplies the default initialisation
    options: Options = Field(default_factory=dict)  # e.g. batchnorm=true, heads=4
    # A user architecture by import path ("package.module:callable"), called as factory(**kwargs);
    # name is then a label only. Where the code may come from: [plugins] in zooscope.toml (engine.nets).
    factory: str | None = None
    kwargs: JsonObject = Field(default_factory=dict)  # keyword arguments of the factory (JSON values)
    # How to get logits from what forward returns: None (a tensor), "logits" (an attribute or key)
    # or "0" (an index into a tuple).
    output: str | None = None

    @field_validator("factory")
    @classmethod
    def _factory_is_import_path(cls, v: str | None) -> str | None:
        if v is not None and (len(v) > MAX_FACTORY_LENGTH or not re.fullmatch(_FACTORY_PATTERN, v)):
            raise ValueError(f"factory must be an import path 'package.module:callable' such as "
                             f"'my_models:WideNet' (dotted Python names, at most {MAX_FACTORY_LENGTH} characters; "
                             f"a module name, not a file path); got {short_repr(v)}")
        return v

    @field_validator("output")
    @classmethod
    def _output_is_name_or_index(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(_OUTPUT_PATTERN, v):
            raise ValueError("output must be an attribute or key name such as 'logits', or a tuple index such as "
                             f"'0', that picks the logits out of what forward returns; got {short_repr(v)}")
        return v

    @model_validator(mode="after")
    def _kwargs_need_factory(self) -> ArchSpec:
        if self.factory is None and (self.kwargs or self.output is not None):
            raise ValueError("kwargs and output belong to a factory: set factory = 'package.module:callable', "
                             "or use options for a built-in architecture")
        if self.factory is not None and self.options:
            raise ValueError(f"options {short_repr(sorted(self.options))} belong to the built-in architectures; "
                             f"pass the arguments of factory {self.factory!r} in kwargs")
        return self


class OptimSpec(_Spec):
    """A first-order optimiser; the same update is used by single and population training."""

    name: Literal["sgd", "momentum", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0.0, le=100.0)
    momentum: float = Field(0.9, ge=0.0, lt=1.0)  # used by "momentum"
    weight_decay: float = Field(0.0, ge=0.0, le=10.0)  # L2 for sgd/momentum, decoupled for adamw
    betas: tuple[float, float] = (0.9, 0.999)  # used by "adamw"
    eps: float = Field(1e-8, gt=0.0, le=1.0)  # adamw's denominator guard

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        for b in v:
            if not 0.0 <= b < 1.0:
                raise ValueError(f"each beta must be in [0, 1); got {short_repr(b)}")
        return v


_SCHEDULE = re.compile(r"^(linear|log):(\d+)$")


def _check_schedule(value: str | list[int]) -> str | list[int]:
    if isinstance(value, list):
        if not value or any(s < 0 for s in value):
            raise ValueError("explicit checkpoint steps must be a non-empty list of steps >= 0; "
                             f"got {short_repr(value)}")
        steps = sorted(set(value))
        if len(steps) > MAX_CHECKPOINTS:
            raise ValueError(f"{len(steps)} checkpoint steps are listed; at most {MAX_CHECKPOINTS} are allowed")
        return steps
    m = _SCHEDULE.match(value) if len(value) <= 40 else None
    if not m or not 1 <= int(m.group(2)) <= MAX_CHECKPOINTS:
        raise ValueError(f"checkpoint schedule must be 'linear:N', 'log:N' (1 <= N <= {MAX_CHECKPOINTS}) "
                         f"or a list of steps; got {short_repr(value)}")
    return value


class TrainSpec(_Spec):
    """One training run: everything needed to reproduce it."""

    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    arch: ArchSpec = Field(default_factory=ArchSpec)
    optim: OptimSpec = Field(default_factory=OptimSpec)
    batch_size: int = Field(128, ge=1, le=MAX_BATCH_SIZE)
    steps: int = Field(1000, ge=1, le=MAX_STEPS)  # optimiser steps
    seed: Seed = 0  # initialisation and data order
    checkpoints: str | list[int] = "log:8"  # 'linear:N', 'log:N' or explicit steps
    eval_size: int = Field(2048, ge=1, le=MAX_EVAL_SIZE)  # at most this many samples per split for checkpoint metrics
    # The training objective, used by every probe: "auto" is cross-entropy for classification and
    # mean squared error for regression; "token_cross_entropy" averages over every position of a sequence.
    loss: Literal["auto", "cross_entropy", "mse", "token_cross_entropy"] = "auto"
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
        raise ValueError(f"a phase axis is a sweep axis, or 'a/b' or 'a*b' of two; got {short_repr(text)}")
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

    name: str = "zoo"  # printable text, at most MAX_NAME_LENGTH characters
    base: TrainSpec = Field(default_factory=TrainSpec)
    grid: dict[str, list[Scalar]] = Field(default_factory=dict)
    temperature: list[str] = Field(default_factory=list)  # axes acting as temperature (phase diagrams)
    load: list[str] = Field(default_factory=list)  # axes acting as load
    phases: PhaseAxes | None = None  # [phases] temperature = "lr/batch_size", load = "width"

    @field_validator("name")
    @classmethod
    def _printable_name(cls, name: str) -> str:
        return check_name(name, "zoo name")

    @field_validator("grid")
    @classmethod
    def _grid_axes_known(cls, grid: dict[str, list[Scalar]]) -> dict[str, list[Scalar]]:
        for key, values in grid.items():
            if key not in SWEEP_AXES:
                raise ValueError(f"unknown sweep axis {short_repr(key)}; allowed: {', '.join(SWEEP_AXES)}")
            if not values:
                raise ValueError(f"sweep axis {key!r} has no values")
            if len(set(map(str, values))) != len(values):
                raise ValueError(f"sweep axis {key!r} repeats a value: {short_repr(values)}")
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
        ignored = [axis for axis in ("width", "depth") if axis in self.grid]
        if self.base.arch.factory is not None and ignored:
            raise ValueError(f"sweep axes {ignored} set arch.{ignored[0]}, which factory {self.base.arch.factory!r} "
                             "does not take (its size is in kwargs); sweep seed, lr and the other axes instead")
        if self.n_runs > MAX_RUNS:
            raise ValueError(f"the sweep has {self.n_runs} runs; at most {MAX_RUNS} are allowed")
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
                point = ", ".join(f"{k}={short_repr(v, 40)}" for k, v in zip(keys, combo))
                raise ValueError(f"grid point ({point}) is invalid: {format_validation_error(exc)}") from None
        return runs

    def hyperparameters(self, run: TrainSpec) -> dict[str, Scalar]:
        """The swept values of one run, keyed by axis name."""
        out = {}
        for key in self.grid:
            section, field = SWEEP_AXES[key]
            out[key] = getattr(getattr(run, section) if section else run, field)
        return out


_MAX_ERROR_LINES = 10  # problems listed in one message; the rest are counted
_MAX_ERROR_MESSAGE = 500  # characters of one problem's message


def format_validation_error(exc: ValidationError) -> str:
    """One line per problem: ``field.path: message (got value)``.

    The value is a short, truncated ``repr`` (:func:`engine.bounds.short_repr`) and at most
    ten problems are listed, so an error about a huge input stays a few lines long.
    """
    lines = []
    errors = exc.errors(include_url=False)
    for err in errors[:_MAX_ERROR_LINES]:
        loc = ".".join(short_repr(p, 40) if not isinstance(p, (str, int)) else str(p)[:40] for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        if len(msg) > _MAX_ERROR_MESSAGE:
            msg = msg[: _MAX_ERROR_MESSAGE - 1] + "…"
        value = err.get("input")
        shown = "" if isinstance(value, dict) or short_repr(value) in msg else f" (got {short_repr(value)})"
        lines.append(f"{loc or 'spec'}: {msg}{shown}")
    if len(errors) > _MAX_ERROR_LINES:
        lines.append(f"and {len(errors) - _MAX_ERROR_LINES} more problems")
    return "; ".join(lines)


def spec_hash(spec: BaseModel | dict[str, Any]) -> str:
    """A stable content hash of a spec (for probe keys and deduplication)."""
    payload = spec.model_dump(mode="json") if isinstance(spec, BaseModel) else spec
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


class _AliasRefused(yaml.YAMLError):
    pass


class _NoAliasLoader(yaml.SafeLoader):
    """YAML without aliases: ``*name`` would let a few hundred bytes expand to gigabytes."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _AliasRefused(f"line {event.start_mark.line + 1} uses the YAML alias *{printable(event.anchor, 40)}; "
                                "sweep files may not use aliases (or merge keys): write the values out")
        return super().compose_node(parent, index)


def _read_sweep_file(path: Path) -> Any:
    """The parsed contents of a TOML/YAML sweep file of at most MAX_SWEEP_FILE_BYTES."""
    where = str(path)
    if not path.is_file():
        raise ConfigError(f"config file {where} does not exist")
    if path.suffix not in (".toml", ".yaml", ".yml"):
        raise ConfigError(f"config file {where} must end in .toml, .yaml or .yml")
    with path.open("rb") as fh:
        raw = fh.read(MAX_SWEEP_FILE_BYTES + 1)
    if len(raw) > MAX_SWEEP_FILE_BYTES:
        raise ConfigError(f"{where} is larger than {MAX_SWEEP_FILE_BYTES} bytes (1 MiB), the most a sweep file "
                          "may hold; a sweep needs a few kilobytes: list grid values, not data")
    kind = path.suffix[1:].upper()
    try:
        text = raw.decode("utf-8")
        if path.suffix == ".toml":
            return tomllib.loads(text)
        return yaml.load(text, Loader=_NoAliasLoader) or {}  # a SafeLoader that also refuses aliases
    except _AliasRefused as exc:
        raise ConfigError(f"{where}: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{where} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    except RecursionError:
        raise ConfigError(f"{where} nests tables or lists too deeply to be a sweep file") from None
    except ValueError as exc:  # TOMLDecodeError, and int() past Python's digit limit
        raise ConfigError(f"{where} is not valid {kind}: {str(exc)[:300]}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where} is not valid {kind}: {str(exc)[:300]}") from None


def load_sweep(source: str | Path | dict[str, Any]) -> SweepSpec:
    """Load a sweep from a TOML/YAML file or a dict; raise :class:`ConfigError` on bad input.

    A file may hold a full sweep (``name``, ``base``, ``grid``) or a single run
    (``dataset``, ``arch``, ...) which becomes a one-run zoo.
    """
    if isinstance(source, dict):
        data, where = source, "config"
    else:
        data, where = _read_sweep_file(Path(source)), str(source)
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a table of settings; got {type(data).__name__}")
    if "base" not in data and "grid" not in data and any(k in data for k in TrainSpec.model_fields):
        data = {"name": data.pop("name", "zoo"), "base": data}
    try:
        return SweepSpec.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"{where}: {format_validation_error(exc)}") from None
