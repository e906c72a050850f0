"""`zooscope import-zoo --format modelzoo`: a zoo in the Ray Tune layout of Schürholt et al.'s model zoos,
written here (3 trials x 3 epochs of a tiny model), becomes one zoo: a run per trial, a checkpoint per epoch."""

import json
import shutil
import subprocess
import sys

import pytest
import torch
from importer_conftest import cli_args, mlp_states, write_modelzoo

import store
from engine.importer import flatten_params, import_zoo_command

ARGS = ("--format", "modelzoo", "--arch", "mlp", "--width", "8", "--dataset", "moons")


@pytest.fixture(scope="module")
def zoo_template(tmp_path_factory):
    return write_modelzoo(tmp_path_factory.mktemp("zoo") / "tune_zoo_moons_uniform")


@pytest.fixture
def zoo_dir(zoo_template, tmp_path):
    return shutil.copytree(zoo_template, tmp_path / zoo_template.name)


def _import(store_path, folder, *extra):
    return import_zoo_command(cli_args("--store", str(store_path), "import-zoo", str(folder), *ARGS, *extra),
                              store_path)


def test_a_model_zoo_becomes_one_zoo_with_a_run_per_trial(tmp_path, zoo_dir):
    s = tmp_path / "store"
    assert _import(s, zoo_dir) == 0
    with store.open_store(s, owner=False) as st:
        zoo = st.get_zoo("tune_zoo_moons_uniform")
        runs = st.runs_table(zoo["zoo_id"])
        raw = st.list_runs(zoo["zoo_id"])
        ckpts = st.list_checkpoints(zoo_id=zoo["zoo_id"])
        metrics = st.metrics(zoo_id=zoo["zoo_id"])
        first = ckpts[ckpts["run_id"] == runs["run_id"].iloc[0]]
        state = st.get_tensors(first["artifact_sha"].iloc[1])
    assert len(runs) == 3 and (raw["origin"] == "imported").all() and (runs["status"] == "done").all()
    assert sorted(runs["seed"]) == [1, 2, 3]
    assert runs["hp_model::type"].tolist() == ["CNN"] * 3 and sorted(runs["hp_model::dropout"]) == pytest.approx(
        [0.0, 0.1, 0.2])
    assert (runs["hp_optim::lr"] == 0.0003).all() and "hp_dataset::dump" in runs
    assert len(ckpts) == 9 and sorted(set(ckpts["step"])) == [0, 1, 2] and ckpts["epoch"].tolist() == [0, 1, 2] * 3
    trial = zoo_dir / runs["name"].iloc[0] / "checkpoint_000001" / "checkpoints"
    original = torch.load(trial, weights_only=True)
    assert all(torch.equal(state[k], original[k]) for k in original)
    built_by = json.loads(raw["built_by_json"].iloc[0])
    assert built_by["imported_from"] == str(zoo_dir / raw["name"].iloc[0])
    assert sorted(built_by["files_sha256"]) == [f"checkpoint_00000{e}/checkpoints" for e in range(3)]
    # result.json values are metric rows at their training_iteration; the -999 placeholders and Ray's
    # bookkeeping are not; where the log has no value (the untrained epoch's train loss) the evaluation fills in
    one = metrics[metrics["run_id"] == runs["run_id"].iloc[0]]
    got = {(r["step"], r["split"], r["name"]): r["value"] for r in one.to_dict("records")}
    assert got[(2, "test", "acc")] == pytest.approx(0.7) and got[(1, "train", "loss")] == 0.5
    assert got[(0, "train", "loss")] == pytest.approx(first["train_loss"].iloc[0]) != -999
    assert not {name for (_, _, name) in got} & {"time_this_iter_s", "training_iteration", "done", "iter_s"}


def test_flatten_params_keeps_scalars_and_joins_nested_keys():
    assert flatten_params({"model::type": "CNN", "seed": 1, "nested": {"a": 1, "b": {"c": True}}, "list": [1, 2],
                           "none": None}) == {"model::type": "CNN", "seed": 1, "nested.a": 1, "nested.b.c": True,
                                              "list": "[1, 2]", "none": None}


def test_a_pickled_object_is_refused_naming_the_trial_and_nothing_is_written(tmp_path, zoo_dir):
    trial = sorted(p for p in zoo_dir.iterdir() if p.is_dir())[1]
    torch.save({"w": torch.zeros(2), "obj": subprocess.Popen}, trial / "checkpoint_000002" / "checkpoints")
    s = tmp_path / "store"
    with pytest.raises(ValueError, match=r"1 of 3 trials of .* cannot be imported; nothing was written:\n- 1 of 3 "
                                         rf"checkpoint files in .*{trial.name} cannot be imported as mlp\(width=8, "
                                         rf"depth=2\); nothing was written:\n  - {trial.name}/checkpoint_000002/"
                                         r"checkpoints: could not be loaded with torch.load\(weights_only=True\)"):
        _import(s, zoo_dir)
    assert not s.exists()


def test_a_trial_of_another_architecture_is_named(tmp_path, zoo_dir):
    trial = sorted(p for p in zoo_dir.iterdir() if p.is_dir())[2]
    torch.save(mlp_states(1, width=16)[0], trial / "checkpoint_000000" / "checkpoints")
    with pytest.raises(ValueError, match=rf"{trial.name}/checkpoint_000000/checkpoints: 'head.weight' has shape "
                                         r"\(2, 16\) in the checkpoint but \(2, 8\)"):
        _import(tmp_path / "store", zoo_dir)


@pytest.mark.parametrize(("damage", "match"), [
    (lambda t: (t / "params.json").write_text("[1]"), r"params.json must hold a JSON object; got \[1\]"),
    (lambda t: (t / "params.json").write_text('{"seed": -4}'), r"params.json has seed -4; a seed is an integer"),
    (lambda t: (t / "result.json").write_text('{"test_acc": 1}\n'), r"result.json line 1: no 'training_iteration'"),
    (lambda t: [shutil.rmtree(c) for c in t.glob("checkpoint_*")], r"holds no checkpoint_<N>/ folders"),
    (lambda t: shutil.copytree(t / "checkpoint_000001", t / "checkpoint_1"), r"two checkpoint folders for epoch 1"),
    # hostile params.json: nesting past the recursion limit, a name that rewrites the terminal, a huge name
    (lambda t: (t / "params.json").write_text('{"a": ' * 100_000 + "1" + "}" * 100_000),
     r"params.json of trial .* nests lists or objects more than 16 levels deep"),
    (lambda t: (t / "params.json").write_text('{"seed": 1, "model::\\u001b[2Jtype": "CNN"}'),
     r"trial NN_tune\S+: params.json hyperparameter 'model::\\x1b\[2Jtype' contains control or format characters"),
    (lambda t: (t / "params.json").write_text(json.dumps({"seed": 1, "k" * 5000: 1})),
     r"params.json hyperparameter 'kkk.* has 5000 characters; at most 100"),
    (lambda t: ((t / "checkpoint_000002").rename(t.parent.parent / "elsewhere"),
                (t / "checkpoint_000002").symlink_to(t.parent.parent / "elsewhere")),
     r"checkpoint_000002/checkpoints in .* lead outside it \(symbolic links\)"),
    (lambda t: (t / "params.json").write_text(json.dumps({f"h{i}": i for i in range(300)})),
     r"params.json holds more than 256 hyperparameters"),
])
def test_a_damaged_trial_is_explained(tmp_path, zoo_dir, damage, match):
    damage(sorted(p for p in zoo_dir.iterdir() if p.is_dir())[0])
    with pytest.raises(ValueError, match=match):
        _import(tmp_path / "store", zoo_dir)
    assert not (tmp_path / "store").exists()


def test_a_folder_without_trials_and_an_existing_zoo_are_refused(tmp_path, zoo_dir):
    with pytest.raises(ValueError, match=r"holds no trial folders \(a sub-folder with params.json"):
        _import(tmp_path / "store", tmp_path)
    s = tmp_path / "store"
    assert _import(s, zoo_dir, "--zoo", "z") == 0
    with store.open_store(s, owner=False) as st:
        before = st.table_counts()
    with pytest.raises(ValueError, match=r"a zoo named 'z' exists already in .*; import into a new zoo with --zoo"):
        _import(s, zoo_dir, "--zoo", "z")
    with store.open_store(s, owner=False) as st:
        assert st.table_counts() == before


def test_while_the_dashboard_owns_the_store_the_zoo_is_handed_over(tmp_path, zoo_dir):
    from engine.jobs import Dispatcher

    s = tmp_path / "store"
    with store.open_store(s) as st:
        disp = Dispatcher(st)
        out = subprocess.run([sys.executable, "-m", "engine.cli", "--store", str(s), "import-zoo", str(zoo_dir),
                              *ARGS, "--zoo", "handed"], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        assert "Your import (3 run(s), 9 checkpoints) was handed to that process instead" in out.stdout
        assert st.table_counts()["run"] == 0
        disp.tick()
        runs = st.runs_table(st.get_zoo("handed")["zoo_id"])
        assert len(runs) == 3 and sorted(runs["seed"]) == [1, 2, 3] and (runs["steps"] == 2).all()
        assert len(st.list_checkpoints(zoo_id=st.get_zoo("handed")["zoo_id"])) == 9


@pytest.mark.parametrize(("run_update", "match"), [
    ({"hparams": {"model::\x1b[2Jtype": 1}}, r"hyperparameter 'model::\\x1b\[2Jtype' contains control or format"),
    ({"metrics": [{"step": 0, "split": "train", "name": "x" * 5000, "value": 1.0}]},
     r"metric name 'xxx.* has 5000 characters; at most 100"),
    ({"metrics": [{"step": -3, "split": "train", "name": "loss", "value": 1.0}]},
     r"metric row 0: step must be an integer in \[0, 10000000\]; got -3"),
])
def test_a_crafted_import_request_is_refused_and_changes_nothing(tmp_path, run_update, match):
    # a request file in requests/ is read by the server: it is checked as a file from anyone would be
    from engine.config import ArchSpec, DatasetSpec, TrainSpec
    from engine.importer import record_runs_request

    with store.open_store(tmp_path / "store") as st:
        sha = st.put_tensors({"w": torch.zeros(2)})
        before = st.table_counts()
        config = TrainSpec(dataset=DatasetSpec(name="moons"), arch=ArchSpec(name="mlp", width=8, depth=2), steps=1,
                            checkpoints=[1])
        run = {"name": "r", "config": config.model_dump(mode="json"), "hparams": {}, "seed": 0, "built_by": {},
               "metrics": [], "checkpoints": [{"step": 1, "epoch": None, "sha": sha, "metrics": {}}], **run_update}
        with pytest.raises(ValueError, match=match):
            record_runs_request(st, {"zoo": "z", "owner": "local", "runs": [run]})
        assert st.table_counts() == before
