"""What start_run, log and checkpoint refuse, with the message, before anything is written."""

from __future__ import annotations

import math

import pytest
import torch

import store
from engine.tracking import check_config, metric_key, start_run

GOOD = dict(zoo="z", name="r", arch="mlp", dataset="mnist1d")


@pytest.mark.parametrize("change, match", [
    ({"zoo": ""}, r"zoo name must not be blank; got ''"),
    ({"zoo": "a\x1b[2Jb"}, r"zoo name contains control or format characters \(U\+001B\)"),
    ({"name": "x" * 101}, r"run name has 101 characters; at most 100 are allowed"),
    ({"name": 5}, r"run name must be text; got 5"),
    ({"owner": "al\u202eice"}, r"owner contains control or format characters \(U\+202E\)"),
    ({"config": [1, 2]}, r"config must be a dict of JSON values \(e.g. vars\(args\)\); got list \[1, 2\]"),
    ({"config": {"lr": math.nan}}, r"config\['lr'\] is nan; config values must be finite numbers"),
    ({"config": {"out": {"dir": __import__("pathlib").Path("/x")}}},
     r"config\['out'\]\['dir'\] holds PosixPath .*only JSON values .* convert it first, e.g. str\(path\)"),
    ({"config": {1: "a"}}, r"config has a non-text key 1; JSON keys are text"),
    ({"config": {"blob": "x" * 70_000}}, r"config is 700\d\d bytes as JSON; at most 65536 are allowed"),
    ({"arch": "my models:Net"}, r"arch 'my models:Net' .* is not usable: .*factory"),
    ({"arch": "mlp", "arch_kwargs": {"widht": 3}},
     r"arch 'mlp' with arch_kwargs \{'widht': 3\} is not usable: .*widht"),
    ({"arch": 3}, r"arch must be a factory 'module:callable', a built-in architecture name or an ArchSpec; got int 3"),
    ({"dataset": " "}, r"dataset must not be blank"),
    ({"flush_every_s": 0}, r"flush_every_s and heartbeat_s must be > 0 seconds; got 0, 30.0"),
])
def test_bad_arguments_are_refused_and_nothing_is_written(tmp_path, change, match):
    path = tmp_path / "store"
    with pytest.raises(ValueError, match=match):
        start_run(path, **{**GOOD, **change})
    assert not path.exists()


def test_numpy_and_torch_scalars_in_a_config_are_taken_as_numbers():
    import numpy as np

    assert check_config({"lr": np.float32(0.5), "n": torch.tensor(3), "t": (1, "a")}) == \
        {"lr": 0.5, "n": 3, "t": [1, "a"]}


def test_metric_names_map_to_splits():
    assert metric_key("train_loss") == ("train", "loss")
    assert metric_key("val_acc") == ("val", "acc")
    assert metric_key("loss") == ("batch", "loss")
    assert metric_key("grad_norm") == ("log", "grad_norm")
    assert metric_key("train_") == ("log", "train_")


@pytest.fixture
def run(tmp_path):
    r = start_run(tmp_path / "store", **GOOD)
    yield r
    r.finish()


def _parts(run) -> int:
    return len(list(store.logged_run_inbox(run.store_path, run.run_id).glob("part-*")))


def test_log_refuses_non_numbers_and_bad_steps(run):
    with pytest.raises(ValueError, match=r"run.log: metric 'train_loss' must be a number; got str 'low'"):
        run.log(1, train_loss="low")
    with pytest.raises(ValueError, match=r"step must be an integer >= 0; got float 1.5"):
        run.log(1.5, train_loss=1.0)
    with pytest.raises(ValueError, match=r"step must be an integer >= 0; got -1"):
        run.log(-1, train_loss=1.0)
    with pytest.warns(RuntimeWarning, match=r"metric 'train_loss' is inf at step 2; not recorded"):
        run.log(2, train_loss=math.inf)
    assert run._rows == []


@pytest.mark.parametrize("weights, match", [
    (lambda: {"w": torch.tensor([1.0, math.nan])}, r"\['w'\] hold NaN/inf values; these are not usable weights"),
    (lambda: {"n": torch.tensor([1, 2])}, r"state_dict has no floating-point tensor; these are not weights"),
    (lambda: {}, r"a checkpoint's state_dict is empty"),
    (lambda: {"w": [1.0]}, r"a checkpoint's state_dict must map names to tensors; \['w'\] do not"),
    (lambda: "model.pt", r"checkpoint takes an nn.Module or its state_dict\(\); got str 'model.pt'"),
    (lambda: _nan_linear(), r"'weight' \(1 of 4\) holds NaN/inf values"),
])
def test_checkpoint_refuses_unusable_weights_and_writes_nothing(run, weights, match):
    run.flush(wait=True)  # the run's first bundle is written in the background: count after it
    before = _parts(run)
    artifacts = run.store_path / "artifacts"
    n_files = len(list(artifacts.rglob("*.safetensors")))
    with pytest.raises(ValueError, match=match):
        run.checkpoint(weights(), 10)
    assert _parts(run) == before and len(list(artifacts.rglob("*.safetensors"))) == n_files


def _nan_linear() -> torch.nn.Module:
    lin = torch.nn.Linear(2, 2)
    with torch.no_grad():
        lin.weight[0, 0] = math.nan
    return lin


def test_a_finished_run_refuses_more_rows(tmp_path):
    r = start_run(tmp_path / "store", **GOOD)
    r.finish()
    with pytest.raises(RuntimeError, match=r"run 'r' is done; log before it ends"):
        r.log(1, train_loss=1.0)


def test_a_second_checkpoint_at_a_step_is_refused_with_a_warning(run):
    assert run.checkpoint(torch.nn.Linear(2, 2), 3)
    with pytest.warns(RuntimeWarning, match=r"a checkpoint at step 3 is already recorded; this one is not stored"):
        assert run.checkpoint(torch.nn.Linear(2, 2), 3) is None


def test_a_tracking_bundle_cannot_rewrite_a_run_trained_here(tmp_path):
    path = tmp_path / "store"
    with store.open_store(path) as st:
        zoo = st.create_zoo("z")
        (trained,) = st.add_runs([{"zoo_id": zoo, "status": "done", "name": "trained"}])
        r = start_run(path, **GOOD)
        r.flush(wait=True)
        forged = store.logged_run_job_id("forged")
        store.write_bundle(path, forged, {"run": [{"run_id": trained, "zoo_id": "x", "status": "failed"}]},
                           {"tracking": {"zoo_name": "z", "zoo_id": "x", "zoo_owner": None}})
        report = st.ingest_bundles()
        assert "exists and was not logged from a script" in report.failed[f"{forged}/000000"]
        assert st.get_run(trained)["status"] == "done"
        r.finish()
