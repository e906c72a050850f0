"""Architecture-specific knobs in ``ArchSpec.options``, declared once and validated.

Each built-in architecture declares its options as a dict name -> :class:`Option`
(a default plus the allowed values), the way scikit-learn declares
``_parameter_constraints`` instead of writing if-chains.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["Option", "resolve_options"]


@dataclass(frozen=True)
class Option:
    """One knob: its type, default and allowed values.

    Attributes
    ----------
    default : bool | int | str
    choices : tuple, optional
        Allowed values (strings); ``None`` means any value of the default's type.
    minimum : int, optional
        Smallest allowed value of an integer option.
    """

    default: bool | int | str
    choices: tuple[str, ...] | None = None
    minimum: int | None = None

    def check(self, arch: str, name: str, value: Any) -> Any:
        """Return ``value`` if allowed, else raise a ValueError that says what is."""
        where = f"option {name!r} of architecture {arch!r}"
        if isinstance(self.default, bool):
            if not isinstance(value, bool):
                raise ValueError(f"{where} must be true or false; got {value!r}")
        elif isinstance(self.default, int):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"{where} must be an integer; got {value!r}")
            if self.minimum is not None and value < self.minimum:
                raise ValueError(f"{where} must be >= {self.minimum}; got {value}")
        elif self.choices is not None and value not in self.choices:
            raise ValueError(f"{where} must be one of {', '.join(self.choices)}; got {value!r}")
        return value


def resolve_options(arch: str, declared: Mapping[str, Option], given: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults overridden by ``given``; unknown names and bad values raise ValueError.

    Examples
    --------
    >>> resolve_options("mlp", {"batchnorm": Option(False)}, {"batchnorm": True})
    {'batchnorm': True}
    """
    unknown = sorted(set(given) - set(declared))
    if unknown:
        allowed = ", ".join(sorted(declared)) or "none"
        names = ", ".join(map(repr, unknown))
        raise ValueError(f"unknown option(s) {names} for architecture {arch!r}; allowed: {allowed}")
    resolved = {name: option.default for name, option in declared.items()}
    for name, value in given.items():
        resolved[name] = declared[name].check(arch, name, value)
    return resolved
