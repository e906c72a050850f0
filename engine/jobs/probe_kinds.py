"""Probe kinds: what a probe returns (:class:`ProbeResult`), how its stored form becomes its typed
result (:class:`ResultLoader`), and the registry the built-in probes add themselves to.

Apart from :mod:`engine.jobs.probe_job` (which runs probes and serves their results) so that the
built-in probes, which register here, and the probe runner, which loads them, import no cycle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from pydantic import BaseModel

from engine.registry import Registry, describe

__all__ = ["PROBE_KINDS", "ProbeKind", "ProbeResult", "ResultLoader", "register_probe"]


@dataclass(frozen=True)
class ProbeResult:
    """What a probe returns: ``summary`` (JSON-able numbers and labels) and ``arrays`` (name -> array).

    ``metrics`` (optional) are ``metric`` table rows (``run_id, step, split, name, value``) that
    land in the catalog with the probe row, in the same bundle; rows already there are kept.
    """

    summary: dict[str, Any]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)

    def decoded(self, loader: ResultLoader) -> Any:
        """``loader.from_stored(self)``, built once per result (a stored result is decoded once per process).

        The typed value shares this result's arrays, which are read-only once cached: do not change it.
        """
        memo = self.__dict__.setdefault("_decoded", {})  # not a field: equality and repr ignore it
        if loader not in memo:
            memo[loader] = loader.from_stored(self)
        return memo[loader]


class ResultLoader(Protocol):
    """How a probe kind's stored result becomes its typed result (a class with a ``from_stored`` classmethod)."""

    def from_stored(self, result: ProbeResult) -> Any: ...


class _Untyped:
    """The loader of a probe kind registered without ``result=``: the stored result itself."""

    @staticmethod
    def from_stored(result: ProbeResult) -> ProbeResult:
        return result


@dataclass(frozen=True)
class ProbeKind:
    name: str
    run: Callable[[Any, Any, Callable[[float, str], None]], ProbeResult]  # (ProbeInputs, params, progress)
    params: type[BaseModel]
    code_version: str = "1"
    n_checkpoints: tuple[int, int | None] = (1, None)  # (min, max) input checkpoints
    description: str = ""
    result: ResultLoader = _Untyped  # decodes a stored result (ProbeStatus.typed)
    # Re-trains from a checkpoint with the run's own optimiser settings (instability's spawning), so it
    # needs runs trained here: a logged or imported run's optimiser settings are placeholders.
    replays_training: bool = False


PROBE_KINDS: Registry[ProbeKind] = Registry("probe", label=lambda kind: describe(kind.run))


def register_probe(name: str, run, params: type[BaseModel], *, code_version: str = "1",
                   n_checkpoints: tuple[int, int | None] = (1, None), description: str = "",
                   result: ResultLoader | None = None, replays_training: bool = False) -> None:
    """Make ``run`` available as probe ``name`` (bump ``code_version`` when its results change).

    ``result`` rebuilds the typed result from the stored one (``result.from_stored(ProbeResult)``);
    without it, :meth:`ProbeStatus.typed` hands back the :class:`ProbeResult` itself.
    ``replays_training`` marks a probe that re-trains from its input checkpoints with their runs'
    optimiser settings: it is refused for runs whose ``origin`` is ``'logged'`` or ``'imported'``.
    The same registration again is a no-op; another one under a taken name raises ValueError.
    """
    PROBE_KINDS.register(name, ProbeKind(name, run, params, code_version, n_checkpoints, description,
                                         result or _Untyped, replays_training))
