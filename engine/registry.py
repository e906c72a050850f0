"""Named registries: datasets, architectures, probe kinds and job kinds all keep their entries here.

One duplicate policy for all of them: registering the same entry again under its name
is a no-op (a module imported twice, a notebook cell run again with the same
function); a *different* entry under a taken name is refused with both named, so two
plug-ins can never silently shadow each other. Unknown names are refused with the
list of known ones, by :meth:`Registry.get` / :meth:`Registry.check`, the one place
each registry's names are validated.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

__all__ = ["Registry", "describe"]

T = TypeVar("T")


def describe(obj: object, limit: int = 80) -> str:
    """A short name for an entry in messages: ``module.qualname`` for functions and classes, else its repr."""
    target = getattr(obj, "__wrapped__", obj)
    qualname = getattr(target, "__qualname__", None)
    if qualname is not None and not isinstance(target, str):
        return f"{getattr(target, '__module__', '?')}.{qualname}"
    text = repr(obj)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Registry(Generic[T]):
    """Entries by name, in registration order.

    Parameters
    ----------
    what : str
        What an entry is, for messages: ``"dataset"``, ``"architecture"``, ``"probe kind"``.
    hint : str
        Appended to the unknown-name message, e.g. how to register one's own.
    error : type of ValueError
        Raised for unknown names (a subclass keeps a domain's own error type).
    label : callable, optional
        ``label(entry) -> str`` for collision messages; :func:`describe` of the entry by default.
    """

    def __init__(self, what: str, *, hint: str = "", error: type[ValueError] = ValueError,
                 label: Callable[[T], str] | None = None):
        self.what, self.hint, self.error = what, hint, error
        self._label = label or describe
        self._entries: dict[str, T] = {}

    def register(self, name: str, entry: T) -> None:
        """Add ``entry`` under ``name``; the same (equal) entry again is a no-op, a different one raises."""
        if not isinstance(name, str) or not name.strip() or name != name.strip():
            raise ValueError(f"{self.what} name must be a non-empty string without surrounding spaces; got {name!r}")
        existing = self._entries.get(name)
        if existing is None:
            self._entries[name] = entry
            return
        if existing is entry or existing == entry:
            return
        raise ValueError(
            f"{self.what} {name!r} is already registered as {self._label(existing)}; refusing to replace it "
            f"with {self._label(entry)}. Register yours under another name."
        )

    def unregister(self, name: str) -> None:
        """Remove ``name`` (an unknown name raises, as :meth:`get` does)."""
        self.get(name)
        del self._entries[name]

    def get(self, name: str) -> T:
        """The entry under ``name``, or the registry's error listing the known names."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):  # TypeError: an unhashable "name"
            raise self.error(self.unknown_message(name)) from None

    def check(self, name: str) -> str:
        """``name`` itself when it is registered (usable as a pydantic ``AfterValidator``), else the error."""
        self.get(name)
        return name

    def unknown_message(self, name: object) -> str:
        shown = repr(name) if len(repr(name)) <= 80 else repr(name)[:77] + "..."
        text = f"unknown {self.what} {shown}; available: {', '.join(self.names()) or 'none'}"
        return f"{text}. {self.hint}" if self.hint else text

    def names(self) -> list[str]:
        """Registered names, sorted."""
        return sorted(self._entries)

    def items(self) -> list[tuple[str, T]]:
        """``(name, entry)`` pairs in registration order."""
        return list(self._entries.items())

    def copy(self) -> Registry[T]:
        """An independent registry with the same entries (tests register into a copy)."""
        other = Registry(self.what, hint=self.hint, error=self.error, label=self._label)
        other._entries = dict(self._entries)
        return other

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:
        return f"Registry({self.what!r}, {len(self)} entries)"
