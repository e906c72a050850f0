"""Where user code may come from: the plugin folders and installed packages the server's owner allows.

A factory named by import path (``ArchSpec.factory = "my_models:WideNet"``) is imported, and
importing code is running code. So a module is imported only when its top-level package

* lies under one of the plugin folders (``[plugins] paths`` in ``zooscope.toml``), or
* is one of the installed packages named in ``[plugins] packages`` (by default
  ``torchvision``, ``transformers`` and ``timm``).

Nothing a browser sends can add a folder or a package: the settings file is the only way in.

The configuration is process-wide. :func:`use_plugins` sets it (the server, the CLI and the
dispatcher call it from the settings) and mirrors it into ``$ZOOSCOPE_PLUGIN_PATHS`` /
``$ZOOSCOPE_PLUGIN_PACKAGES``, which every local worker process inherits and the Ray executor
forwards to its tasks (it forwards every ``ZOOSCOPE_*`` variable); a process that was never
configured reads those variables (:func:`plugin_config`).
"""

from __future__ import annotations

import importlib.util
import os
import re
import site
import sys
import sysconfig
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.bounds import short_repr
from engine.config import ConfigError

__all__ = [
    "DEFAULT_PACKAGES",
    "FactoryError",
    "PLUGIN_PACKAGES_ENV",
    "PLUGIN_PATHS_ENV",
    "PluginConfig",
    "module_source",
    "plugin_config",
    "use_plugins",
]

PLUGIN_PATHS_ENV = "ZOOSCOPE_PLUGIN_PATHS"  # os.pathsep-separated absolute folders
PLUGIN_PACKAGES_ENV = "ZOOSCOPE_PLUGIN_PACKAGES"  # comma-separated top-level package names
DEFAULT_PACKAGES = ("torchvision", "transformers", "timm")
MAX_PLUGIN_PATHS = 32
_PACKAGE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")


class FactoryError(ConfigError):
    """A factory spec that cannot build a model here, naming the spec and the cause."""


@dataclass(frozen=True)
class PluginConfig:
    """The plugin folders (absolute) and the installed top-level packages factories may come from."""

    paths: tuple[Path, ...] = ()
    packages: tuple[str, ...] = DEFAULT_PACKAGES


_configured: PluginConfig | None = None


def _check_packages(packages: Iterable[str]) -> tuple[str, ...]:
    out = []
    for name in packages:
        if not isinstance(name, str) or not _PACKAGE_NAME.match(name):
            raise ConfigError(f"plugins.packages: each entry is a top-level package name such as 'transformers' "
                              f"(no dots, no paths); got {short_repr(name)}")
        out.append(name)
    return tuple(dict.fromkeys(out))


def _check_paths(paths: Iterable[str | os.PathLike[str]]) -> tuple[Path, ...]:
    out = []
    for p in paths:
        folder = Path(p).expanduser()
        if not folder.is_absolute():
            raise ConfigError(f"plugins.paths: {str(folder)!r} must be resolved to an absolute folder first "
                              "(engine.settings.Settings.plugin_paths does that, relative to zooscope.toml)")
        if not folder.is_dir():
            raise ConfigError(f"plugins.paths: folder {str(folder)!r} does not exist; create it or remove it "
                              "from [plugins] paths in zooscope.toml")
        out.append(folder.resolve())
    if len(out) > MAX_PLUGIN_PATHS:
        raise ConfigError(f"plugins.paths lists {len(out)} folders; at most {MAX_PLUGIN_PATHS} are allowed")
    return tuple(dict.fromkeys(out))


def use_plugins(paths: Iterable[str | os.PathLike[str]] = (),
                packages: Iterable[str] = DEFAULT_PACKAGES) -> PluginConfig:
    """Allow factories from these folders and installed packages, in this process and the workers it starts.

    Parameters
    ----------
    paths : iterable of path
        Absolute folders that hold the user's modules (``models/my_models.py``). They are
        appended to ``sys.path`` (after everything installed, so they never shadow it).
    packages : iterable of str
        Top-level names of installed packages factories may be imported from.

    Returns
    -------
    PluginConfig
        The configuration now in force.

    Raises
    ------
    ConfigError
        A folder that does not exist or is not absolute, or a package name that is not one.
    """
    global _configured
    config = PluginConfig(_check_paths(paths), _check_packages(packages))
    for folder in config.paths:
        if str(folder) not in sys.path:
            sys.path.append(str(folder))
    os.environ[PLUGIN_PATHS_ENV] = os.pathsep.join(str(p) for p in config.paths)
    os.environ[PLUGIN_PACKAGES_ENV] = ",".join(config.packages)
    importlib.invalidate_caches()
    _configured = config
    return config


def plugin_config() -> PluginConfig:
    """The configuration in force: the one :func:`use_plugins` set, else the one in the environment.

    A worker process (local or a Ray task) is never configured itself: it reads
    ``$ZOOSCOPE_PLUGIN_PATHS`` and ``$ZOOSCOPE_PLUGIN_PACKAGES`` that its owner set, and
    puts the folders on ``sys.path`` the first time it is asked.
    """
    if _configured is not None:
        return _configured
    raw_paths = os.environ.get(PLUGIN_PATHS_ENV)
    raw_packages = os.environ.get(PLUGIN_PACKAGES_ENV)
    if raw_paths is None and raw_packages is None:
        return PluginConfig()
    paths = [p for p in (raw_paths or "").split(os.pathsep) if p]
    packages = DEFAULT_PACKAGES if raw_packages is None else [p for p in raw_packages.split(",") if p]
    return use_plugins(paths, packages)


def _is_under(path: str | None, folders: tuple[Path, ...]) -> Path | None:
    if not path or not os.path.isabs(path):  # "built-in", "frozen": never a plugin
        return None
    resolved = Path(path).resolve()
    return next((f for f in folders if resolved.is_relative_to(f)), None)


def _installed_folders() -> tuple[Path, ...]:
    """The environment's package folders (site-packages, the standard library), resolved."""
    folders = {sysconfig.get_paths()[k] for k in ("purelib", "platlib", "stdlib", "platstdlib")}
    folders |= set(site.getsitepackages()) | {site.getusersitepackages()}
    return tuple(Path(f).resolve() for f in folders if f)


def module_source(module_name: str, factory: str) -> tuple[str, Path | None]:
    """Where ``module_name``'s top-level package comes from, checked before anything is imported.

    Returns ``("plugin", folder)`` for a module under a plugin folder, ``("installed", None)``
    for an allowed installed package. Finding a top-level module's spec runs none of its code.

    Raises
    ------
    FactoryError
        The module cannot be found, or it is neither under a plugin folder nor an allowed package.
    """
    config = plugin_config()
    top = module_name.split(".")[0]
    folders = ", ".join(repr(str(p)) for p in config.paths) or "none configured"
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError) as exc:
        raise FactoryError(f"factory {factory!r}: cannot look up module {top!r}: {exc}") from None
    if spec is None:
        hint = (" (torchvision needs the build made for the installed torch; on a CPU-only torch use "
                "factory = \"transformers:ResNetForImageClassification\" with a config instead)"
                if top == "torchvision" else "")
        raise FactoryError(
            f"factory {factory!r}: no module named {top!r} in the plugin folders ({folders}) or the installed "
            f"environment{hint}; put {top}.py in a folder listed in [plugins] paths of zooscope.toml, or install it")
    locations = [spec.origin, *(spec.submodule_search_locations or [])]
    folder = next((f for f in (_is_under(loc, config.paths) for loc in locations) if f is not None), None)
    if folder is not None:
        stray = [loc for loc in locations if loc and os.path.isabs(loc) and _is_under(loc, config.paths) is None]
        if stray:  # a namespace package with a portion elsewhere: its submodules could come from there
            raise FactoryError(f"factory {factory!r}: package {top!r} also lies outside the plugin folders "
                               f"({', '.join(map(repr, stray))}); give it an __init__.py in {str(folder)!r}, "
                               "or rename it")
        return "plugin", folder
    if top in config.packages:
        if not any(_is_under(loc, _installed_folders()) for loc in locations):
            raise FactoryError(
                f"factory {factory!r}: module {top!r} ({spec.origin or 'a namespace package'}) is not the installed "
                f"package {top!r}: it lies outside the environment's site-packages (the working directory, or "
                f"another sys.path entry), so it is not imported; install {top}, or put it in a plugin folder "
                "([plugins] paths in zooscope.toml)")
        return "installed", None
    raise FactoryError(
        f"factory {factory!r}: module {top!r} ({spec.origin or 'a namespace package'}) is neither under a plugin "
        f"folder ({folders}) nor an allowed installed package ({', '.join(config.packages) or 'none'}); "
        f"the server's owner allows it in zooscope.toml: [plugins] paths = [\"models/\"] or "
        f"packages = [..., \"{top}\"] (importing a module runs its code)")
