"""[plugins] in zooscope.toml: folders relative to the file, package names checked, errors naming the file."""

from __future__ import annotations

import os
import sys

import pytest

from engine.config import ConfigError
from engine.nets import plugins
from engine.settings import apply_plugins, load_settings


@pytest.fixture
def restored(monkeypatch):
    monkeypatch.setenv(plugins.PLUGIN_PATHS_ENV, "")
    monkeypatch.setenv(plugins.PLUGIN_PACKAGES_ENV, "")
    monkeypatch.setattr(plugins, "_configured", None)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delenv("ZOOSCOPE_CONFIG", raising=False)


def test_paths_are_relative_to_the_settings_file(tmp_path, restored):
    (tmp_path / "models").mkdir()
    (tmp_path / "zooscope.toml").write_text('[plugins]\npaths = ["models/"]\npackages = ["transformers"]\n')
    settings = load_settings(tmp_path)
    assert settings.plugin_paths() == [tmp_path / "models"]
    apply_plugins(settings)
    config = plugins.plugin_config()
    assert config.paths == ((tmp_path / "models").resolve(),) and config.packages == ("transformers",)
    assert str((tmp_path / "models").resolve()) in sys.path[-1:]  # appended: never shadows what is installed
    # what a worker process inherits
    assert os.environ[plugins.PLUGIN_PATHS_ENV] == str((tmp_path / "models").resolve())
    assert os.environ[plugins.PLUGIN_PACKAGES_ENV] == "transformers"


def test_defaults_allow_the_usual_packages_and_no_folder():
    settings = load_settings(None)
    assert settings.plugins.paths == [] and settings.plugins.packages == ["torchvision", "transformers", "timm"]


def test_missing_folder_names_the_settings_file(tmp_path, restored):
    (tmp_path / "zooscope.toml").write_text('[plugins]\npaths = ["nowhere/"]\n')
    with pytest.raises(ConfigError, match=r"settings \(.*zooscope.toml\): plugins.paths: folder '.*nowhere' "
                                          r"does not exist"):
        apply_plugins(load_settings(tmp_path))


@pytest.mark.parametrize("bad", ['"../evil"', '"a.b"', '"/usr/lib"'])
def test_package_names_are_names(tmp_path, restored, bad):
    (tmp_path / "zooscope.toml").write_text(f"[plugins]\npackages = [{bad}]\n")
    with pytest.raises(ConfigError, match=r"plugins.packages: each entry is the top-level name "
                                          r"of an installed package.*no dots, no paths"):
        load_settings(tmp_path)


def test_a_worker_reads_the_environment(tmp_path, restored, monkeypatch):
    (tmp_path / "models").mkdir()
    monkeypatch.setenv(plugins.PLUGIN_PATHS_ENV, str(tmp_path / "models"))
    monkeypatch.setenv(plugins.PLUGIN_PACKAGES_ENV, "timm")
    config = plugins.plugin_config()
    assert config.paths == ((tmp_path / "models").resolve(),) and config.packages == ("timm",)
