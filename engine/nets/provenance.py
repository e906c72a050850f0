"""What code built a model: the record stored with every run as ``run.built_by_json``.

>>> provenance(ArchSpec(name="mlp", width=32))
{'builtin': 'mlp', 'options': {}, 'code_version': '...'}
>>> provenance(ArchSpec(factory="my_models:WideNet", kwargs={"width": 8}))
{'factory': 'my_models:WideNet', 'kwargs': {'width': 8}, 'output': None,
 'source_file': 'my_models.py', 'source_sha256': '3f…', 'source': 'plugin'}

One function computes it for runs trained here (the train job), logged from a script
(:mod:`engine.tracking`) and imported (:mod:`engine.importer`), so the Zoo page reads one shape.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import inspect
import sys
from pathlib import Path
from typing import Any

from engine.config import ArchSpec

from .factory import load_factory
from .plugins import module_source

__all__ = ["describe_built_by", "provenance"]


def _code_version() -> str:
    try:
        return importlib.metadata.version("zooscope")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _distribution(top: str) -> tuple[str | None, str | None]:
    """The installed distribution that provides top-level package ``top``, and its version."""
    names = importlib.metadata.packages_distributions().get(top) or []
    for name in names:
        try:
            return name, importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None, None


def _source_file(obj: Any, module_name: str) -> Path | None:
    """The file that defines ``obj`` (a function or class), else its module's file."""
    for target in (obj, sys.modules.get(module_name)):
        try:
            path = inspect.getsourcefile(target)
        except (TypeError, OSError):
            path = None
        if path:
            return Path(path)
    return None


def provenance(spec: ArchSpec) -> dict[str, Any]:
    """The ``built_by`` record of a model built from ``spec`` (JSON-ready).

    Parameters
    ----------
    spec : ArchSpec
        A built-in architecture, or a factory import path with kwargs.

    Returns
    -------
    dict
        Built-ins: ``{"builtin": name, "width", "depth", "options", "code_version"}``.
        Factories: ``{"factory", "kwargs", "output", "source": "plugin" | "installed",
        "source_file", "source_sha256"}``; ``source_file`` is relative to its plugin folder
        (or to the installed package's parent), ``source_sha256`` the SHA-256 of that file's
        bytes as they are on disk now (an edited file gives a new hash, even in a process that
        imported the old one), and for an installed package ``package`` and ``version``.

    Raises
    ------
    engine.nets.factory.FactoryError
        The factory cannot be loaded here (same rules as building it).
    """
    if spec.factory is None:
        return {"builtin": spec.name, "width": spec.width, "depth": spec.depth, "options": dict(spec.options),
                "code_version": _code_version()}
    module_name = spec.factory.split(":")[0]
    where, folder = module_source(module_name, spec.factory)
    obj = load_factory(spec.factory, spec.kwargs)
    record: dict[str, Any] = {"factory": spec.factory, "kwargs": spec.kwargs, "output": spec.output,
                              "source": where, "source_file": None, "source_sha256": None}
    path = _source_file(obj, module_name)
    if path is not None and path.is_file():
        record["source_sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
        record["source_file"] = _display_path(path, folder, module_name)
    if where == "installed":
        record["package"], record["version"] = _distribution(module_name.split(".")[0])
    return record


def _display_path(path: Path, folder: Path | None, module_name: str) -> str:
    """``path`` relative to its plugin folder, or to the folder holding the installed package."""
    resolved = path.resolve()
    if folder is not None and resolved.is_relative_to(folder):
        return resolved.relative_to(folder).as_posix()
    top = sys.modules.get(module_name.split(".")[0])
    top_file = getattr(top, "__file__", None)
    if top_file:
        root = Path(top_file).resolve().parent
        root = root.parent if Path(top_file).name == "__init__.py" else root
        if resolved.is_relative_to(root):
            return resolved.relative_to(root).as_posix()
    return resolved.name


def describe_built_by(built_by: dict[str, Any] | None) -> str:
    """One line for a table: ``my_models:WideNet(width=8) · my_models.py@3f2a9c1b`` or ``built-in mlp``."""
    if not built_by:
        return ""
    if "builtin" in built_by:
        return f"built-in {built_by['builtin']}"
    kwargs = built_by.get("kwargs") or {}
    args = ", ".join(f"{k}={_short_value(v)}" for k, v in kwargs.items())
    text = f"{built_by.get('factory', '?')}({args})"
    if built_by.get("output") is not None:
        text += f" → .{built_by['output']}" if not str(built_by["output"]).isdigit() else f" → [{built_by['output']}]"
    where = built_by.get("source_file") or built_by.get("package")
    if built_by.get("version"):
        where = f"{built_by.get('package')} {built_by['version']}"
    sha = built_by.get("source_sha256")
    if where or sha:
        text += f" · {where or '?'}" + (f"@{sha[:8]}" if sha else "")
    return text


def _short_value(value: Any, limit: int = 40) -> str:
    text = repr(value) if not isinstance(value, dict) else "{" + ", ".join(
        f"{k}={_short_value(v, 20)}" for k, v in value.items()) + "}"
    return text if len(text) <= limit else text[: limit - 1] + "…"
