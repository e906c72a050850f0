"""Is a run buildable in this process? Its dataset and architecture, checked against the registries.

A built-in architecture is checked by name; a factory (``arch.factory``) is imported from an
allowed place and called once (:func:`engine.nets.check_factory`, in a child process with a time and
a memory limit: :func:`engine.nets.check_factory_bounded`), so a missing module, a
factory that raises or returns no ``nn.Module``, kwargs that do not fit, or a request for
pretrained weights is refused before anything is queued.
The run's loss is checked against the task of a data set registered in the store.

:mod:`engine.config` keeps specs pure (it imports no registry); the boundaries that
queue work (the CLI, the dashboard's form, the dispatcher) call :func:`check_registered`
before anything is written.
"""

from __future__ import annotations

from engine.config import ConfigError, SweepSpec, TrainSpec
from engine.data import check_dataset_name, registered_info
from engine.nets import check_architecture_name, check_factory, check_factory_bounded

from .losses import check_loss

__all__ = ["check_registered"]


def check_registered(spec: TrainSpec | SweepSpec, *, isolated: bool = True) -> None:
    """Raise :class:`~engine.config.ConfigError` unless every name ``spec`` refers to is registered.

    Parameters
    ----------
    spec : TrainSpec or SweepSpec
        One run, or a sweep (its grid never changes a dataset or architecture name,
        so its ``base`` run says it all).
    isolated : bool
        Check a factory in a child process with a time and a memory limit
        (:func:`engine.nets.check_factory_bounded`): the default, and what every process that
        owns the store must use. ``False`` runs the user's code here (a worker, which the owner
        can kill, re-checking the spec it was handed).

    Raises
    ------
    ConfigError
        ``base.dataset.name: unknown dataset 'imagenet'; available: ...`` (the field, then
        the registry's own message with the registered names), or
        ``base.arch.factory: factory 'my_models:Net' raised ...``.
    """
    if isinstance(spec, SweepSpec):
        run, where = spec.base, "base."
    elif isinstance(spec, TrainSpec):
        run, where = spec, ""
    else:
        raise TypeError(f"check_registered takes a TrainSpec or a SweepSpec; got {type(spec).__name__}")
    checks = [("dataset.name", check_dataset_name, run.dataset.name)]
    if run.arch.factory is None:
        checks.append(("arch.name", check_architecture_name, run.arch.name))
    else:
        check = check_factory_bounded if isolated else check_factory
        checks.append(("arch.factory", check, run.arch))  # the grid never changes factory or kwargs
    for field, check, value in checks:
        try:
            check(value)
        except ValueError as exc:
            raise ConfigError(f"{where}{field}: {exc}") from None
    info = registered_info(run.dataset.name)  # a registered data set's task is known without loading it
    if info is not None:
        try:
            check_loss(run.loss, info.get("task"), repr(run.dataset.name))
        except ValueError as exc:
            raise ConfigError(f"{where}loss: {exc}") from None
