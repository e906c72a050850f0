"""Frozen result dataclasses <-> stored probe results (JSON summary + named arrays).

NumPy fields become arrays, nested dataclasses are flattened with ``name.`` prefixes,
everything else goes to the JSON summary; :func:`unpack` rebuilds the dataclass so
stored results feed the same figure functions as fresh ones.

These two are the probe kinds' own business: a kind whose result is one engine dataclass
registers :class:`Packed` as its loader, a kind with a composite result registers its
result class (``to_stored``/``from_stored``). Nothing above the probe kinds calls them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from ..probe_kinds import ProbeResult

__all__ = ["Packed", "pack", "unpack"]

T = TypeVar("T")


def pack(obj: Any, prefix: str = "", *, skip: tuple[str, ...] = ()) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """Split a dataclass into (summary, arrays); fields named in ``skip`` are left out (e.g. eigenvectors)."""
    summary: dict[str, Any] = {}
    arrays: dict[str, np.ndarray] = {}
    for f in dataclasses.fields(obj):
        if f.name in skip:
            continue
        value = getattr(obj, f.name)
        name = prefix + f.name
        if isinstance(value, np.ndarray):
            arrays[name] = value
        elif dataclasses.is_dataclass(value):
            s, a = pack(value, name + ".")
            summary.update(s)
            arrays.update(a)
        elif isinstance(value, (np.floating, np.integer)):
            summary[name] = value.item()
        elif isinstance(value, tuple):
            summary[name] = list(value)
        else:
            summary[name] = value
    return summary, arrays


def unpack(cls: type[T], summary: dict[str, Any], arrays: dict[str, np.ndarray], prefix: str = "") -> T:
    """Rebuild ``cls`` from :func:`pack` output; fields left out by ``skip`` become empty arrays."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        name = prefix + f.name
        if name in arrays:
            kwargs[f.name] = arrays[name]
        elif name in summary:
            value = summary[name]
            kwargs[f.name] = tuple(value) if isinstance(value, list) and "tuple" in str(f.type) else value
        elif f.default is not dataclasses.MISSING:
            kwargs[f.name] = f.default
        else:
            kwargs[f.name] = np.empty(0)
    return cls(**kwargs)


@dataclass(frozen=True)
class Packed(Generic[T]):
    """The stored form of a probe kind whose result is one engine dataclass, flattened by :func:`pack`.

    Parameters
    ----------
    cls : type
        The frozen result dataclass (e.g. ``Sharpness``).
    skip : tuple of str
        Fields not stored (they load as empty arrays), e.g. a merged model's state.
    optional : tuple of str
        Array fields that mean None when stored empty (a 1-D surface's ``betas`` in older stores).
    """

    cls: type[T]
    skip: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()

    def to_stored(self, value: T) -> ProbeResult:
        summary, arrays = pack(value, skip=self.skip)
        return ProbeResult(summary, arrays)

    def from_stored(self, result: ProbeResult) -> T:
        value = unpack(self.cls, result.summary, result.arrays)
        empty = {f: None for f in self.optional if isinstance(getattr(value, f), np.ndarray) and
                 getattr(value, f).size == 0}
        return dataclasses.replace(value, **empty) if empty else value
