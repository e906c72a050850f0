"""Is a run buildable in this process? Its dataset and architecture names, checked against the registries
(and its loss against the task of a data set registered in the store).

:mod:`engine.config` keeps specs pure (it imports no registry); the boundaries that
queue work (the CLI, the dashboard's form, the dispatcher) call :func:`check_registered`
before anything is written.
"""

from __future__ import annotations

from engine.config import ConfigError, SweepSpec, TrainSpec
from engine.data import check_dataset_name, registered_info
from engine.nets import check_architecture_name

from .losses import check_loss

__all__ = ["check_registered"]


def check_registered(spec: TrainSpec | SweepSpec) -> None:
    """Raise :class:`~engine.config.ConfigError` unless every name ``spec`` refers to is registered.

    Parameters
    ----------
    spec : TrainSpec or SweepSpec
        One run, or a sweep (its grid never changes a dataset or architecture name,
        so its ``base`` run says it all).

    Raises
    ------
    ConfigError
        ``base.dataset.name: unknown dataset 'imagenet'; available: ...`` (the field, then
        the registry's own message with the registered names).
    """
    if isinstance(spec, SweepSpec):
        run, where = spec.base, "base."
    elif isinstance(spec, TrainSpec):
        run, where = spec, ""
    else:
        raise TypeError(f"check_registered takes a TrainSpec or a SweepSpec; got {type(spec).__name__}")
    for field, check, name in (("dataset", check_dataset_name, run.dataset.name),
                               ("arch", check_architecture_name, run.arch.name)):
        try:
            check(name)
        except ValueError as exc:
            raise ConfigError(f"{where}{field}.name: {exc}") from None
    info = registered_info(run.dataset.name)  # a registered data set's task is known without loading it
    if info is not None:
        try:
            check_loss(run.loss, info.get("task"), repr(run.dataset.name))
        except ValueError as exc:
            raise ConfigError(f"{where}loss: {exc}") from None
