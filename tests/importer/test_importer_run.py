"""`zooscope import-run`: a folder of checkpoints and its logged metrics become one run, whole or not at all."""

import hashlib
import json
import re
import subprocess
import sys

import pytest
import torch
from importer_conftest import cli_args, mlp_states, write_run_folder
from safetensors.torch import load_file, save_file

import engine.importer.weights as weights_mod
import store
from engine import data as zdata
from engine import nets
from engine.cli import main
from engine.config import ArchSpec
from engine.importer import evaluate_state, import_run_command

ARGS = ("--arch", "mlp", "--width", "8", "--dataset", "moons")


def _import(store_path, folder, *extra):
    return import_run_command(cli_args("--store", str(store_path), "import-run", str(folder), *ARGS, *extra),
                              store_path)


def _counts(path):
    with store.open_store(path, owner=False) as st:
        return st.table_counts()


def _orphan_artifact_rows(path):
    with store.open_store(path, owner=False) as st:
        used = set(st.list_checkpoints()["artifact_sha"])
        rows = set(st._df("SELECT sha FROM artifact")["sha"])
    return rows - used


def test_a_folder_becomes_one_run_with_its_whole_trajectory(tmp_path, run_folder, capsys):
    (run_folder / "metrics.csv").write_text("step,train_loss,lr,host\n0,0.9,0.5,a\n5,0.7,0.5,a\n10,0.5,0.5,a\n"
                                            "20,0.4,0.5,a\n30,0.3,0.5,a\n")
    s = tmp_path / "store"
    assert _import(s, run_folder, "--name", "mine") == 0
    out = capsys.readouterr().out
    assert "imported 4 checkpoints (steps 0..30)" in out and "columns without numbers, not imported: 'host'" in out
    with store.open_store(s, owner=False) as st:
        (run,) = st.list_runs().to_dict("records")
        ckpts = st.list_checkpoints(run["run_id"])
        metrics = st.metrics(run["run_id"])
        built_by = json.loads(run["built_by_json"])
        states = [st.get_tensors(sha) for sha in ckpts["artifact_sha"]]
    assert run["origin"] == "imported" and run["status"] == "done" and run["name"] == "mine"
    assert json.loads(run["config_json"])["checkpoints"] == [0, 10, 20, 30]
    assert ckpts["step"].tolist() == [0, 10, 20, 30]
    # the artifacts are the files' tensors, and the provenance hashes the files' bytes
    for step, state in zip([0, 10, 20, 30], states):
        original = load_file(str(run_folder / f"step_{step}.safetensors"))
        assert state.keys() == original.keys() and all(torch.equal(state[k], original[k]) for k in original)
    assert built_by["builtin"] == "mlp" and built_by["width"] == 8 and built_by["imported_from"] == str(run_folder)
    assert built_by["files_sha256"] == {
        f"step_{i}.safetensors": hashlib.sha256((run_folder / f"step_{i}.safetensors").read_bytes()).hexdigest()
        for i in (0, 10, 20, 30)}
    # headline metrics: Zooscope's evaluation on the dataset, the same as evaluating the state by hand
    ds = zdata.load("moons")
    model = nets.build(ArchSpec(name="mlp", width=8, depth=2), ds.input_shape, ds.n_outputs)
    expected = evaluate_state(model, states[-1], ds)
    last = ckpts.iloc[-1]
    assert last["test_acc"] == pytest.approx(expected["test_acc"]) and last["train_loss"] == pytest.approx(
        expected["train_loss"])
    # logged metrics as written (the file's train loss wins over the evaluation), evaluation where the log has none
    got = {(r["step"], r["split"], r["name"]): r["value"] for r in metrics.to_dict("records")}
    assert got[(10, "train", "loss")] == 0.5 and got[(5, "train", "loss")] == 0.7 and got[(30, "logged", "lr")] == 0.5
    assert got[(30, "test", "acc")] == pytest.approx(expected["test_acc"])
    assert (5, "test", "acc") not in got  # no checkpoint at step 5: nothing evaluated there


def test_two_folders_give_two_runs_in_one_zoo(tmp_path):
    s = tmp_path / "store"
    for seed in (1, 2):
        assert _import(s, write_run_folder(tmp_path / f"seed{seed}", 3, seed=seed), "--zoo", "two") == 0
    with store.open_store(s, owner=False) as st:
        runs = st.runs_table(st.get_zoo("two")["zoo_id"])
    assert sorted(runs["name"]) == ["seed1", "seed2"] and runs["steps"].tolist() == [20, 20]


def test_a_shape_mismatch_names_the_file_and_writes_nothing(tmp_path, run_folder):
    save_file(mlp_states(1, width=16)[0], str(run_folder / "step_40.safetensors"))
    s = tmp_path / "store"
    with pytest.raises(ValueError, match=r"1 of 5 checkpoint files in .*mlp-run cannot be imported as "
                                         r"mlp\(width=8, depth=2\); nothing was written:\n  - step_40.safetensors: "
                                         r"'head.weight' has shape \(2, 16\) in the checkpoint but \(2, 8\)"):
        _import(s, run_folder)
    assert not s.exists()


def test_every_bad_file_is_named_at_once(tmp_path, run_folder):
    state = load_file(str(run_folder / "step_10.safetensors"))
    state["layers.0.linear.weight"][0, 0] = float("nan")
    save_file(state, str(run_folder / "step_10.safetensors"))
    torch.save({"w": torch.zeros(2), "obj": subprocess.Popen}, run_folder / "step_20.safetensors.pt")
    (run_folder / "step_20.safetensors").unlink()
    state = load_file(str(run_folder / "step_30.safetensors"))
    state["extra.weight"] = torch.zeros(3)
    save_file(state, str(run_folder / "step_30.safetensors"))
    with pytest.raises(ValueError, match=r"3 of 4 checkpoint files") as err:
        _import(tmp_path / "store", run_folder)
    lines = str(err.value).splitlines()[1:]
    assert lines[0].startswith("  - step_10.safetensors: 'layers.0.linear.weight' (1 of 16) holds NaN/inf values")
    assert lines[1].startswith("  - step_20.safetensors.pt: could not be loaded with torch.load(weights_only=True)")
    assert lines[2].startswith("  - step_30.safetensors: checkpoint has keys ['extra.weight'] that architecture")
    assert not (tmp_path / "store").exists()


def test_a_too_large_file_is_refused_before_it_is_read(tmp_path, run_folder, monkeypatch):
    monkeypatch.setattr(weights_mod, "MAX_IMPORT_WEIGHTS_BYTES", 100)
    with pytest.raises(ValueError, match=r"step_0.safetensors: weights file has \d+ bytes; at most 100 are read; "
                                         r"the limit is engine\.bounds\.MAX_IMPORT_WEIGHTS_BYTES"):
        _import(tmp_path / "store", run_folder)


def test_nothing_is_written_when_recording_fails_midway(tmp_path, run_folder, monkeypatch):
    """A failure inside the transaction (here: the metric rows) rolls back the zoo, run, checkpoints and the
    artifact rows; the files left behind are no catalog rows and are collected by gc_artifacts."""
    s = tmp_path / "store"
    assert _import(s, write_run_folder(tmp_path / "first", 2, seed=5)) == 0
    before = _counts(s)

    def fail(self, rows):
        raise ValueError("disk full (simulated)")

    monkeypatch.setattr(store.Store, "add_metrics", fail)
    with pytest.raises(ValueError, match=r"disk full \(simulated\)"):
        _import(s, run_folder, "--zoo", "other")
    assert _counts(s) == before
    assert _orphan_artifact_rows(s) == set()
    with store.open_store(s) as st:
        assert len(st.gc_artifacts(min_age_s=0)) == 4  # the four checkpoints written before the failure


def test_the_cli_says_what_to_name(tmp_path, run_folder, capsys):
    assert main(["--store", str(tmp_path / "s"), "import-run", str(run_folder), "--dataset", "moons"]) == 2
    assert "name what builds the model: --arch NAME" in capsys.readouterr().err
    assert main(["--store", str(tmp_path / "s"), "import-run", str(run_folder), "--dataset", "moons", "--factory",
                 "m:f", "--kwargs", "[1]"]) == 2
    assert "--kwargs must be a JSON object; got [1]" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_while_the_dashboard_owns_the_store_the_import_is_handed_over(tmp_path, run_folder):
    from engine.jobs import Dispatcher

    s = tmp_path / "store"
    with store.open_store(s) as st:
        disp = Dispatcher(st)  # the owner, as the dashboard server is
        before = st.table_counts()
        out = subprocess.run([sys.executable, "-m", "engine.cli", "--store", str(s), "import-run", str(run_folder),
                              *ARGS, "--zoo", "handed"], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert "Your import (1 run(s), 4 checkpoints) was handed to that process instead" in out.stdout
        assert st.table_counts() == before  # nothing in the catalog until the owner takes the request
        disp.tick()
        (run,) = st.runs_table(st.get_zoo("handed")["zoo_id"]).to_dict("records")
        ckpts = st.list_checkpoints(run["run_id"])
        assert run["steps"] == 30 and ckpts["step"].tolist() == [0, 10, 20, 30]
        assert st.get_run(run["run_id"])["origin"] == "imported"
        assert 0 <= run["final_test_acc"] <= 1
        loaded = st.get_tensors(ckpts["artifact_sha"].iloc[-1])
    original = load_file(str(run_folder / "step_30.safetensors"))
    assert all(torch.equal(loaded[k], original[k]) for k in original)


TINY_NET = '''
from torch import nn


class TinyNet(nn.Module):
    """Two inputs (moons), two classes."""

    def __init__(self, hidden=4):
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(2, hidden), nn.Linear(hidden, 2)

    def forward(self, x):
        return self.fc2(self.fc1(x).relu())
'''


@pytest.fixture
def plugin_store(tmp_path, monkeypatch):
    """A store whose zooscope.toml allows factories from a plugin folder holding imported_models.py;
    the plugin configuration, sys.path and the module are restored afterwards."""
    from engine.nets import plugins

    for var in (plugins.PLUGIN_PATHS_ENV, plugins.PLUGIN_PACKAGES_ENV):
        monkeypatch.setenv(var, "")
        monkeypatch.delenv(var)
    monkeypatch.setattr(plugins, "_configured", None)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.delitem(sys.modules, "imported_models", raising=False)
    folder = tmp_path / "models"
    folder.mkdir()
    (folder / "imported_models.py").write_text(TINY_NET)
    s = tmp_path / "store"
    s.mkdir()
    (s / "zooscope.toml").write_text(f'[plugins]\npaths = ["{folder}"]\n')
    return s


def test_a_factory_built_model_is_imported_with_its_provenance(tmp_path, plugin_store):
    s = plugin_store
    folder = tmp_path / "fac"
    folder.mkdir()
    exec(compile(TINY_NET, "imported_models.py", "exec"), space := {})
    for step in (0, 1):
        model = space["TinyNet"](hidden=4)
        save_file({k: v.detach().contiguous() for k, v in model.state_dict().items()},
                  str(folder / f"step_{step}.safetensors"))
    args = cli_args("--store", str(s), "import-run", str(folder), "--factory", "imported_models:TinyNet",
                    "--kwargs", '{"hidden": 4}', "--dataset", "moons")
    assert import_run_command(args, s) == 0
    with store.open_store(s, owner=False) as st:
        (run,) = st.list_runs().to_dict("records")
    built_by = json.loads(run["built_by_json"])
    source = (tmp_path / "models" / "imported_models.py").read_bytes()
    assert built_by["factory"] == "imported_models:TinyNet" and built_by["kwargs"] == {"hidden": 4}
    assert built_by["source"] == "plugin" and built_by["source_sha256"] == hashlib.sha256(source).hexdigest()
    assert built_by["imported_from"] == str(folder) and sorted(built_by["files_sha256"]) == [
        "step_0.safetensors", "step_1.safetensors"]
    assert json.loads(run["config_json"])["arch"]["factory"] == "imported_models:TinyNet"
    assert json.loads(run["hparams_json"]) == {"arch": "imported_models:TinyNet", "kwargs": {"hidden": 4}}
    wide = space["TinyNet"](hidden=5)
    save_file({k: v.detach().contiguous() for k, v in wide.state_dict().items()}, str(folder / "step_2.safetensors"))
    label = re.escape('imported_models:TinyNet(**{"hidden": 4})')
    with pytest.raises(ValueError, match=rf"step_2.safetensors: 'fc1.bias' has shape \(5,\) in the checkpoint "
                                         rf"but \(4,\) in '{label}'.*pass the --kwargs \(and --dataset\) it was "
                                         r"built with"):
        import_run_command(args, s)


def test_a_factory_outside_the_plugin_folders_is_refused_before_anything_is_read(tmp_path, run_folder):
    args = cli_args("--store", str(tmp_path / "s"), "import-run", str(run_folder), "--factory", "torch.nn:Linear",
                    "--kwargs", '{"in_features": 2, "out_features": 2}', "--dataset", "moons")
    with pytest.raises(ValueError, match=r"factory 'torch.nn:Linear': module 'torch' .* is neither under a plugin "
                                         r"folder"):
        import_run_command(args, tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_a_single_file_import_records_its_origin_and_provenance(tmp_path, run_folder):
    """`zooscope import FILE` (one checkpoint) is an imported run too, with the file's hash."""
    s = tmp_path / "store"
    w = run_folder / "step_30.safetensors"
    assert main(["--store", str(s), "import", str(w), *ARGS]) == 0
    with store.open_store(s, owner=False) as st:
        (run,) = st.list_runs().to_dict("records")
    built_by = json.loads(run["built_by_json"])
    assert run["origin"] == "imported" and built_by["builtin"] == "mlp" and built_by["imported_from"] == str(w)
    assert built_by["files_sha256"] == {w.name: hashlib.sha256(w.read_bytes()).hexdigest()}


def test_a_handed_over_import_is_checked_against_the_owners_role(tmp_path, run_folder):
    """The owner records a request as the named user: a viewer's import is refused and nothing is written."""
    from engine.auth import AccessPolicy, PermissionDenied, User, save_users
    from engine.config import DatasetSpec
    from engine.importer import (
        build_for,
        check_trajectory,
        discover_checkpoints,
        hand_over_runs,
        record_runs_request,
        write_trajectory,
    )

    save_users(tmp_path / "users.toml", {"val": User("val", "viewer"), "ed": User("ed", "editor")})
    access = AccessPolicy("password", tmp_path / "users.toml")
    arch, dataset = ArchSpec(name="mlp", width=8, depth=2), DatasetSpec(name="moons")
    ds, model = build_for(arch, dataset)
    tr = check_trajectory("r", discover_checkpoints(run_folder), arch, dataset, source=run_folder, model=model)
    s = tmp_path / "store"
    with store.open_store(s) as st:
        before = st.table_counts()
        run = write_trajectory(tr, s, ds=ds, model=model)
        for owner in ("val", "ed"):
            hand_over_runs(s, "z", [run], owner=owner)
        val, ed = st.take_requests()
        with pytest.raises(PermissionDenied, match="'val' may not import checkpoints"):
            record_runs_request(st, val["payload"], access=access)
        assert st.table_counts() == before
        (run_id,) = record_runs_request(st, ed["payload"], access=access)
        assert st.get_run(run_id)["owner"] == "ed" and len(st.list_checkpoints(run_id)) == 4


def test_kwargs_nested_past_the_recursion_limit_are_a_clear_error(tmp_path):
    from engine.importer import arch_from_args

    args = cli_args("--store", str(tmp_path / "s"), "import-run", str(tmp_path), "--dataset", "moons",
                    "--factory", "my_models:WideNet", "--kwargs", '{"a": ' + "[" * 100_000 + "]" * 100_000 + "}")
    with pytest.raises(ValueError, match=r"--kwargs nests lists or objects too deeply; got '\{\"a\": \[\[\[\["):
        arch_from_args(args)
