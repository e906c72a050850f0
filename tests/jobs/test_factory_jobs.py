"""User architectures through the real job path: [plugins] in zooscope.toml, a worker process, provenance rows."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest
from user_models_fixtures import RESNET

import store
from engine.config import ConfigError, load_sweep
from engine.jobs import Dispatcher

sys.path.insert(0, str(Path(__file__).parents[1] / "nets"))
import plugin_fixtures  # noqa: E402

clean_plugins = plugin_fixtures.clean_plugins  # a fixture of this module too
write_plugins = plugin_fixtures.write_plugins


@pytest.fixture
def owned(tmp_path, clean_plugins):
    """A store whose zooscope.toml lists ``models/`` (next to it) as a plugin folder, owned by this process."""
    path = tmp_path / "store"
    path.mkdir()
    write_plugins(path / "models")
    (path / "zooscope.toml").write_text('[plugins]\npaths = ["models/"]\n')
    st = store.open_store(path)
    disp = Dispatcher(st)  # reads the settings: [plugins] in force here and in every worker it starts
    yield path, st, disp
    disp.stop(kill_workers=True)
    st.close()


def _sweep(arch: dict, dataset: str = "moons", steps: int = 6, seeds=(0,)) -> dict:
    return {"name": "user-arch", "grid": {"seed": list(seeds)},
            "base": {"dataset": {"name": dataset}, "arch": arch, "batch_size": 16, "steps": steps,
                     "checkpoints": "linear:2"}}


def test_plugin_factory_trains_in_a_worker_process(owned):
    path, st, disp = owned
    zoo_id, job_id = disp.submit_sweep(_sweep({"factory": "my_models:WideNet",
                                               "kwargs": {"in_features": 2, "width": 4, "n_classes": 2}},
                                              seeds=(0, 1)))
    (job,) = disp.run_until_done([job_id])
    assert job["status"] == "done", job
    runs = st.runs_table(zoo_id)
    assert set(runs["status"]) == {"done"} and set(runs["origin"]) == {"trained"}
    sha = hashlib.sha256((path / "models" / "my_models.py").read_bytes()).hexdigest()
    for record in map(json.loads, runs["built_by_json"]):
        assert record["factory"] == "my_models:WideNet" and record["source_file"] == "my_models.py"
        assert record["source_sha256"] == sha  # what the worker imported, hashed by the worker
    assert (runs["steps"] == 6).all()


def test_transformers_resnet_trains_in_a_worker_process(owned):
    _, st, disp = owned
    zoo_id, job_id = disp.submit_sweep(_sweep(RESNET, dataset="digits", steps=4))
    (job,) = disp.run_until_done([job_id])
    assert job["status"] == "done", job
    (run,) = st.runs_table(zoo_id).to_dict("records")
    assert run["status"] == "done" and run["final_train_loss"] > 0
    record = json.loads(run["built_by_json"])
    assert record["package"] == "transformers" and record["output"] == "logits"


def test_builtin_runs_record_builtin(owned):
    _, st, disp = owned
    zoo_id, job_id = disp.submit_sweep(_sweep({"name": "mlp", "width": 4}, steps=3))
    (job,) = disp.run_until_done([job_id])
    assert job["status"] == "done", job
    (record,) = map(json.loads, st.runs_table(zoo_id)["built_by_json"])
    assert record["builtin"] == "mlp" and record["width"] == 4


@pytest.mark.parametrize("arch, why", [
    ({"factory": "my_models:raises"}, r"raised RuntimeError: width must be even"),
    ({"factory": "no_such_module:Net"}, r"no module named 'no_such_module'"),
    ({"factory": "my_models:not_a_module"}, r"returned list"),
    ({"factory": "my_models:WideNet", "kwargs": {"depth": 2}}, r"do not fit its signature"),
    ({"factory": "visionzoo.models:resnet18", "kwargs": {"weights": "DEFAULT"}}, r"pretrained weights"),
])
def test_nothing_is_queued_on_a_bad_factory(owned, arch, why):
    _, st, disp = owned
    with pytest.raises(ConfigError, match=rf"base.arch.factory: factory '{arch['factory']}'.*{why}"):
        disp.submit_sweep(load_sweep(_sweep(arch)))
    assert st.list_zoos().empty and st.list_runs().empty and st.list_jobs().empty


def test_cli_train_uses_the_plugin_folder(tmp_path, clean_plugins):
    import subprocess

    from engine.nets import plugins

    path = tmp_path / "store"
    path.mkdir()
    write_plugins(path / "models")
    (path / "zooscope.toml").write_text('[plugins]\npaths = ["models/"]\n')
    config = tmp_path / "sweep.toml"
    config.write_text('name = "cli-arch"\n[base]\nsteps = 3\nbatch_size = 16\ncheckpoints = "linear:1"\n'
                      '[base.dataset]\nname = "moons"\n[base.arch]\nfactory = "my_models:WideNet"\n'
                      'kwargs = { in_features = 2, n_classes = 2 }\n')
    env = {k: v for k, v in __import__("os").environ.items()
           if k not in (plugins.PLUGIN_PATHS_ENV, plugins.PLUGIN_PACKAGES_ENV, "ZOOSCOPE_CONFIG")}
    proc = subprocess.run([sys.executable, "-m", "engine.cli", "--store", str(path), "train", str(config)],
                          cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with store.open_store(path, owner=False) as st:
        (record,) = map(json.loads, st.runs_table()["built_by_json"])
    assert record["factory"] == "my_models:WideNet"


def test_plugin_factory_trains_in_a_ray_task(tmp_path, clean_plugins):
    """[plugins] reaches Ray tasks through the ZOOSCOPE_* variables the executor forwards."""
    import os

    ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]'")
    path = tmp_path / "store"
    path.mkdir()
    write_plugins(path / "models")
    (path / "zooscope.toml").write_text('[jobs]\nexecutor = "ray"\nworkers = 1\n[plugins]\npaths = ["models/"]\n')
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    st = store.open_store(path)
    disp = Dispatcher(st)  # plugins applied before the Ray executor is made from the same settings
    try:
        assert type(disp.executor).__name__ == "RayExecutor"
        zoo_id, job_id = disp.submit_sweep(_sweep({"factory": "my_models:WideNet",
                                                   "kwargs": {"in_features": 2, "n_classes": 2}}, steps=3))
        (job,) = disp.run_until_done([job_id], poll_s=0.1)
        assert job["status"] == "done", job
        (record,) = map(json.loads, st.runs_table(zoo_id)["built_by_json"])
        assert record["source_file"] == "my_models.py"
    finally:
        disp.stop(kill_workers=True)
        st.close()
        if started:
            ray.shutdown()


def test_a_worker_loads_factories_with_the_hub_offline(tmp_path, clean_plugins):
    import os
    import subprocess

    code = ("import os; from engine.config import ArchSpec; from engine.nets import check_factory; "
            "check_factory(ArchSpec(factory='transformers:ResNetForImageClassification', output='logits', "
            "kwargs={'config': {'num_labels': 2}})); import huggingface_hub.constants as c; "
            "print(os.environ['HF_HUB_OFFLINE'], c.HF_HUB_OFFLINE)")
    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parents[2], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1", "True"]
