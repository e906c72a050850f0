"""Server settings: defaults, file, environment overrides, and errors that name the value."""

import pytest

from engine.config import ConfigError
from engine.jobs.executors import LocalExecutor, make_executor
from engine.settings import load_settings


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    for var in ("ZOOSCOPE_CONFIG", "ZOOSCOPE_WORKERS", "ZOOSCOPE_EXECUTOR", "ZOOSCOPE_RAY_ADDRESS", "ZOOSCOPE_AUTH"):
        monkeypatch.delenv(var, raising=False)


def test_defaults_without_a_file(tmp_path):
    s = load_settings(tmp_path)
    assert (s.jobs.executor, s.jobs.workers, s.auth.mode, s.source) == ("local", 1, "auto", None)


def test_store_file_and_environment_override(tmp_path, monkeypatch):
    (tmp_path / "zooscope.toml").write_text('[jobs]\nworkers = 3\nper_user = 2\n[auth]\nmode = "password"\n')
    s = load_settings(tmp_path)
    assert (s.jobs.workers, s.jobs.per_user, s.auth.mode) == (3, 2, "password")
    assert s.resolve("users.toml") == tmp_path / "users.toml"
    monkeypatch.setenv("ZOOSCOPE_WORKERS", "5")
    assert load_settings(tmp_path).jobs.workers == 5
    ex = make_executor(tmp_path)
    assert isinstance(ex, LocalExecutor) and ex.max_workers == 5


@pytest.mark.parametrize("text, match", [
    ("[jobs]\nworkers = -1\n", r"jobs\.workers: .*greater than or equal to 0 \(got -1\)"),
    ('[jobs]\nexecutor = "slurm"\n', r"jobs\.executor: .*'slurm'"),
    ("[jobs]\nwrokers = 2\n", r"jobs\.wrokers: Extra inputs"),
    ("[jobs\n", r"not valid TOML"),
])
def test_bad_files_are_refused_with_the_value(tmp_path, text, match):
    (tmp_path / "zooscope.toml").write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_settings(tmp_path)


def test_missing_named_file(tmp_path, monkeypatch):
    monkeypatch.setenv("ZOOSCOPE_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match="nope.toml .* does not exist"):
        load_settings(tmp_path)
