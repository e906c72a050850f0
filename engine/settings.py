"""Server settings: how jobs run and who may sign in, from one TOML file.

The file is ``$ZOOSCOPE_CONFIG`` when set, else ``zooscope.toml`` in the store folder;
without either, the defaults below hold (one user on localhost, local worker processes).

.. code-block:: toml

    [jobs]
    executor = "local"        # or "ray"
    workers = 1               # jobs running at once (the global cap per device; 0 holds the queue)
    per_user = 1              # jobs running at once for one user (0: no cap)
    ray_address = "auto"      # "auto", "local" or "ray://head:10001"
    ray_num_cpus = 1.0        # resources one Ray task asks for
    ray_num_gpus = 0.0        # fractional GPUs for small models, e.g. 0.25

    [auth]
    mode = "auto"             # "off", "password", "oidc" or "auto"
    users_file = "users.toml" # built-in accounts (hashed passwords, roles); relative to this file
    default_role = "viewer"   # the role of an OIDC user not named in users_file

    [plugins]
    paths = ["models/"]       # folders of your model code (factory = "my_models:Net"), relative to this file
    packages = ["torchvision", "transformers", "timm"]  # installed packages factories may come from

Importing a factory runs its code: only these folders and packages are allowed (docs/deploy.md,
"Trust model for user code"). :func:`apply_plugins` puts them in force for this process and the
workers it starts.

Environment variables override single values: ``ZOOSCOPE_WORKERS``, ``ZOOSCOPE_EXECUTOR``,
``ZOOSCOPE_RAY_ADDRESS``, ``ZOOSCOPE_AUTH``.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from engine.config import ConfigError

__all__ = ["AuthSettings", "JobSettings", "PluginSettings", "Settings", "apply_plugins", "load_settings",
           "settings_path"]

CONFIG_ENV_VAR = "ZOOSCOPE_CONFIG"


class JobSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    executor: Literal["local", "ray"] = "local"
    workers: int = Field(1, ge=0, le=1024)  # 0: jobs queue but none starts (tests, maintenance)
    per_user: int = Field(1, ge=0, le=1024)
    ray_address: str = "auto"
    ray_num_cpus: float = Field(1.0, ge=0.0)
    ray_num_gpus: float = Field(0.0, ge=0.0)


class AuthSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: Literal["off", "password", "oidc", "auto"] = "auto"
    users_file: str = "users.toml"
    default_role: Literal["viewer", "editor", "admin"] = "viewer"


class PluginSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # Folders holding the user's model modules, relative to the settings file.
    paths: list[Annotated[str, Field(min_length=1, max_length=1000)]] = Field(default_factory=list, max_length=32)
    # Installed top-level packages factories may be imported from.
    packages: list[str] = Field(default_factory=lambda: ["torchvision", "transformers", "timm"], max_length=256)

    @field_validator("packages")
    @classmethod
    def _package_names(cls, names: list[str]) -> list[str]:
        for name in names:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,99}", name):
                raise ValueError(f"each entry is the top-level name of an installed package, such as 'transformers' "
                                 f"(no dots, no paths); got {name!r}")
        return names


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    jobs: JobSettings = JobSettings()
    auth: AuthSettings = AuthSettings()
    plugins: PluginSettings = PluginSettings()
    source: str | None = None  # the file these came from, for messages

    def plugin_paths(self) -> list[Path]:
        """``[plugins] paths`` as absolute folders (relative ones are relative to the settings file)."""
        return [self.resolve(p).absolute() for p in self.plugins.paths]

    def resolve(self, relative: str) -> Path:
        """A path named in the settings, relative to the settings file (or the working folder)."""
        p = Path(relative).expanduser()
        if p.is_absolute() or self.source is None:
            return p
        return Path(self.source).parent / p


_ENV = {  # environment variable -> (section, field)
    "ZOOSCOPE_WORKERS": ("jobs", "workers"),
    "ZOOSCOPE_EXECUTOR": ("jobs", "executor"),
    "ZOOSCOPE_RAY_ADDRESS": ("jobs", "ray_address"),
    "ZOOSCOPE_AUTH": ("auth", "mode"),
}


def settings_path(store_path: Path | None = None) -> Path | None:
    """The settings file in use: ``$ZOOSCOPE_CONFIG``, else ``<store>/zooscope.toml`` if it exists."""
    if os.environ.get(CONFIG_ENV_VAR):
        return Path(os.environ[CONFIG_ENV_VAR]).expanduser()
    if store_path is not None and (Path(store_path) / "zooscope.toml").is_file():
        return Path(store_path) / "zooscope.toml"
    return None


def load_settings(store_path: Path | None = None) -> Settings:
    """Read the settings (see the module docstring); a bad file raises ConfigError naming the value."""
    path = settings_path(store_path)
    data: dict = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"settings file {path} (from ${CONFIG_ENV_VAR}) does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"settings file {path} is not valid TOML: {exc}") from None
    for var, (section, key) in _ENV.items():
        if os.environ.get(var):
            data.setdefault(section, {})[key] = os.environ[var]
    try:
        settings = Settings.model_validate({**data, "source": str(path) if path else None})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"settings{f' ({path})' if path else ''}: {where}: {msg} "
                          f"(got {err.get('input')!r})") from None
    return settings


def apply_plugins(settings: Settings) -> None:
    """Put ``[plugins]`` in force in this process and the workers it starts (:func:`engine.nets.use_plugins`).

    Raises ConfigError naming the settings file when a plugin folder does not exist.
    """
    from engine.nets import use_plugins

    try:
        use_plugins(settings.plugin_paths(), settings.plugins.packages)
    except ConfigError as exc:
        raise ConfigError(f"settings{f' ({settings.source})' if settings.source else ''}: {exc}") from None
