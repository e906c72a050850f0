"""The dataset registry: names → loaders, option checking, and ``load``.

A loader is ``loader(spec: DatasetSpec, *, option=default, ...) -> SourceData``.
Its keyword-only parameters *are* its options: their defaults are the defaults,
their types the accepted types, so ``spec.options`` is checked against the
signature before the loader runs and an unknown or mistyped option is refused
with the list of valid ones.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Annotated, Any

from pydantic import AfterValidator, ValidationError

from engine.config import ConfigError, DatasetSpec, format_validation_error
from engine.data import registered
from engine.data.dataset import Dataset, DatasetError, SourceData
from engine.data.transforms import assemble
from engine.registry import Registry, describe

__all__ = ["DatasetName", "available", "check_dataset_name", "describe_registration", "kind_of", "load", "options_of",
           "register"]

# the only names that read spec.path / spec.label
FILE_DATASETS = ("npz", "csv", "parquet", "imagefolder", "images")

Loader = Callable[..., SourceData]


@dataclass(frozen=True)
class _Entry:
    loader: Loader
    description: str
    kind: str
    options: dict[str, Any]  # option name -> default


DATASETS: Registry[_Entry] = Registry(
    "dataset", hint="Register your own with engine.data.register(name, loader).", error=DatasetError,
    label=lambda entry: describe(entry.loader),
)


def check_dataset_name(name: str) -> str:
    """``name`` when it is a registered dataset, else a :class:`DatasetError` listing the registered ones.

    The one check of dataset names: :func:`load`, :data:`DatasetName` fields and
    :func:`engine.train.check_registered` (specs before they are queued) all use it.
    Names registered in a store (:mod:`engine.data.registered`) count once this process
    uses the store's mirror folder.
    """
    if name not in DATASETS and registered.lookup(name) is not None:
        return name
    return DATASETS.check(name)


# A pydantic field type: a str that must name a registered dataset.
DatasetName = Annotated[str, AfterValidator(check_dataset_name)]


def register(name: str, loader: Loader, *, description: str = "", kind: str = "builtin") -> None:
    """Add a dataset to the registry.

    Parameters
    ----------
    name : str
        What ``DatasetSpec.name`` (or ``load("name")``) refers to.
    loader : callable
        ``loader(spec, *, opt=default, ...) -> SourceData``; every option must be a
        keyword-only parameter with a default of type bool, int, float or str.
    description : str
        One line for ``available()`` and the dashboard.
    kind : str
        A grouping for the dashboard: ``"builtin"``, ``"tabular"``, ``"file"``, ...

    Raises
    ------
    ValueError
        ``name`` is taken by a different loader (or the same one with another
        description or kind); registering the same one again changes nothing.
    """
    if not isinstance(name, str) or not name.strip() or name != name.strip():
        raise ValueError(f"dataset name must be a non-empty string without surrounding spaces; got {name!r}")
    DATASETS.register(name, _Entry(loader, description, kind, _signature_options(name, loader)))


def available(kind: str | None = None) -> dict[str, str]:
    """Registered datasets as ``{name: description}``, optionally only those of one ``kind``
    (``"registered"``: the ones registered in a store this process uses)."""
    out = {n: e.description for n, e in DATASETS.items() if kind is None or e.kind == kind}
    if kind in (None, "registered"):
        for name in registered.registered_names():
            if name not in DATASETS:
                entry = registered.lookup(name)
                out[name] = (entry or {}).get("info", {}).get("describe", name)
    return out


def kind_of(name: str) -> str:
    """The ``kind`` a dataset was registered with."""
    return _entry(name).kind


def options_of(name: str) -> dict[str, Any]:
    """The options a dataset accepts, with their defaults (for forms and docs)."""
    return dict(_entry(name).options)


def load(spec_or_name: DatasetSpec | str | Mapping[str, Any]) -> Dataset:
    """Load a dataset as train/test tensors.

    Parameters
    ----------
    spec_or_name : DatasetSpec, str or mapping
        A spec, a bare registered name (all defaults), or a dict of spec fields.

    Returns
    -------
    Dataset
        Split (when the source has no split of its own), standardised (tabular
        sets), subsampled to ``spec.train_fraction`` and with ``spec.label_noise``
        of the training labels replaced; the same spec always gives the same tensors.
    """
    spec = _as_spec(spec_or_name)
    entry = _entry(spec.name)
    if spec.name not in FILE_DATASETS and (spec.path is not None or spec.label is not None):
        raise DatasetError(
            f"path/label are only read by the file datasets {', '.join(FILE_DATASETS)}; "
            f"{spec.name!r} got path={spec.path!r}, label={spec.label!r}. Drop them or use name='csv' etc."
        )
    options = _checked_options(spec.name, entry.options, spec.options)
    source = entry.loader(spec, **options)
    if not isinstance(source, SourceData):
        raise TypeError(f"loader of {spec.name!r} must return engine.data.SourceData; got {type(source).__name__}")
    return assemble(spec.name, spec, source)


def _as_spec(spec_or_name: DatasetSpec | str | Mapping[str, Any]) -> DatasetSpec:
    if isinstance(spec_or_name, DatasetSpec):
        return spec_or_name
    if isinstance(spec_or_name, str):
        return DatasetSpec(name=spec_or_name)
    if isinstance(spec_or_name, Mapping):
        try:
            return DatasetSpec.model_validate(dict(spec_or_name))
        except ValidationError as exc:
            raise ConfigError(f"dataset spec: {format_validation_error(exc)}") from None
    raise TypeError(f"load() takes a DatasetSpec, a dataset name or a dict; got {type(spec_or_name).__name__}")


def _entry(name: str) -> _Entry:
    if name not in DATASETS:
        entry = registered.lookup(name)
        if entry is not None:
            loader = _registered_loader(name)
            return _Entry(loader, entry.get("info", {}).get("describe", name), "registered", {})
    return DATASETS.get(name)


def _registered_loader(name: str) -> Loader:
    def load_registered(spec: DatasetSpec) -> SourceData:
        file_spec, stats = registered.resolve(name, spec)
        entry = DATASETS.get(file_spec.name)
        source = entry.loader(file_spec, **_checked_options(file_spec.name, entry.options, file_spec.options))
        if stats is not None:  # the recorded numbers, whatever this run's split
            source = replace(source, channel_norm=True, channel_stats=stats)
        return source

    return load_registered


def describe_registration(name: str, kind: str, path: str, **kwargs) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(spec, info)`` for registering a user data set under ``name`` in a store; see
    :func:`engine.data.registered.describe_registration` (it is loaded once, here)."""
    return registered.describe_registration(name, kind, path, load=load, taken=lambda n: n in DATASETS, **kwargs)


def _signature_options(name: str, loader: Loader) -> dict[str, Any]:
    if not callable(loader):
        raise TypeError(f"loader for {name!r} must be callable; got {type(loader).__name__}")
    params = list(inspect.signature(loader).parameters.values())
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) != 1:
        raise TypeError(
            f"loader for {name!r} must take exactly one positional argument (the DatasetSpec) "
            f"and options as keyword-only arguments; its signature is {inspect.signature(loader)}"
        )
    options = {}
    for p in params:
        if p.kind != p.KEYWORD_ONLY:
            continue
        if p.default is p.empty or not isinstance(p.default, bool | int | float | str):
            raise TypeError(f"option {p.name!r} of loader {name!r} needs a bool/int/float/str default")
        options[p.name] = p.default
    return options


def _checked_options(name: str, allowed: dict[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(given) - set(allowed))
    if unknown:
        valid = ", ".join(f"{k}={v!r}" for k, v in allowed.items()) or "none"
        raise DatasetError(f"dataset {name!r} has no option {', '.join(map(repr, unknown))}; its options are: {valid}")
    return {key: _coerced(name, key, given[key], default) if key in given else default
            for key, default in allowed.items()}


def _coerced(name: str, key: str, value: Any, default: Any) -> Any:
    """``value`` converted to the type of ``default``; lossy conversions are refused."""
    expected = type(default)
    if expected is bool:
        ok = isinstance(value, bool)
    elif expected is int:
        ok = isinstance(value, int) and not isinstance(value, bool) or isinstance(value, float) and value.is_integer()
    elif expected is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise DatasetError(
            f"option {key!r} of dataset {name!r} must be {expected.__name__} (default {default!r}); got {value!r}"
        )
    return expected(value)
