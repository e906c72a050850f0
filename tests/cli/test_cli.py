import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import store
from engine import data as zdata
from engine import nets
from engine.cli import main
from engine.config import ArchSpec

sys.path.insert(0, str(Path(__file__).parents[1] / "nets"))
import plugin_fixtures  # noqa: E402

clean_plugins = plugin_fixtures.clean_plugins  # a fixture of this module too

TINY = """
name = "cli-tiny"
[base]
steps = 20
batch_size = 32
checkpoints = "linear:2"
[base.dataset]
name = "moons"
[base.arch]
name = "mlp"
width = 8
[grid]
seed = [0, 1]
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    return path


def test_train_then_ls_shows_runs_with_final_accuracy(tmp_path, tiny, capsys):
    s = str(tmp_path / "store")
    assert main(["--store", s, "train", str(tiny)]) == 0
    capsys.readouterr()
    assert main(["--store", s, "ls", "runs"]) == 0
    out = capsys.readouterr().out
    assert out.count("done") == 2 and "final_test_acc" in out
    assert main(["--store", s, "ls", "zoos"]) == 0
    assert "cli-tiny" in capsys.readouterr().out
    assert main(["--store", s, "export-parquet", str(tmp_path / "pq")]) == 0
    assert (tmp_path / "pq" / "run.parquet").is_file()


def test_invalid_config_is_explained_and_nothing_is_written(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[base.arch]\nwidth = -3\n')
    assert main(["--store", str(tmp_path / "store"), "train", str(bad)]) == 2
    assert "base.arch.width: Input should be greater than or equal to 1 (got -3)" in capsys.readouterr().err
    assert not (tmp_path / "store").exists()


def _weights(tmp_path, width):
    ds = zdata.load("moons")
    model = nets.build(ArchSpec(name="mlp", width=width, depth=2), ds.input_shape, ds.n_outputs, seed=3)
    path = tmp_path / f"w{width}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def test_import_records_a_run_with_a_checkpoint(tmp_path, capsys):
    s = str(tmp_path / "store")
    w = _weights(tmp_path, 16)
    assert main(["--store", s, "import", str(w), "--arch", "mlp", "--width", "16", "--dataset", "moons"]) == 0
    with store.open_store(s) as st:
        zoo_id = st.get_zoo("imported")["zoo_id"]
        (ck,) = st.list_checkpoints(zoo_id=zoo_id).to_dict("records")
        loaded = st.get_tensors(ck["artifact_sha"])
        (run,) = st.runs_table(zoo_id).to_dict("records")
    from safetensors.torch import load_file

    original = load_file(str(w))
    assert loaded.keys() == original.keys() and all(torch.equal(loaded[k], original[k]) for k in original)
    assert run["status"] == "done" and run["name"] == "w16" and 0 <= run["final_test_acc"] <= 1


def test_import_mismatch_is_explained_and_writes_nothing(tmp_path, capsys):
    s = tmp_path / "store"
    w = _weights(tmp_path, 16)
    assert main(["--store", str(s), "import", str(w), "--arch", "mlp", "--width", "32", "--dataset", "moons"]) == 2
    err = capsys.readouterr().err
    assert "has shape (16, 2) in the checkpoint but (32, 2) in 'mlp(width=32, depth=2)'" in err
    assert "pass the --width/--depth" in err
    assert not s.exists()


def test_import_refuses_pickles(tmp_path, capsys):
    evil = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(2), "obj": subprocess.Popen}, evil)
    assert main(["--store", str(tmp_path / "s"), "import", str(evil), "--arch", "mlp", "--dataset", "moons"]) == 2
    assert "weights_only=True" in capsys.readouterr().err


def test_train_while_another_process_owns_the_store_hands_the_request_over(tmp_path, tiny):
    s = tmp_path / "store"
    with store.open_store(s) as st:
        out = subprocess.run([sys.executable, "-m", "engine.cli", "--store", str(s), "train", str(tiny)],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert f"pid {__import__('os').getpid()}" in out.stdout and "handed to that process" in out.stdout
        (req,) = st.take_requests()
    assert req["kind"] == "train_sweep" and req["payload"]["sweep"]["name"] == "cli-tiny"


def test_import_while_another_process_owns_the_store_is_recorded_by_that_process(tmp_path):
    from engine.jobs import Dispatcher

    s = tmp_path / "store"
    w = _weights(tmp_path, 16)
    with store.open_store(s) as st:
        disp = Dispatcher(st)  # the owner, as the dashboard server is
        out = subprocess.run([sys.executable, "-m", "engine.cli", "--store", str(s), "import", str(w), "--arch", "mlp",
                              "--width", "16", "--dataset", "moons", "--name", "handed"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert "Your import was handed to that process instead" in out.stdout
        disp.tick()
        (run,) = st.runs_table(st.get_zoo("imported")["zoo_id"]).to_dict("records")
        assert run["name"] == "handed" and run["status"] == "done" and 0 <= run["final_test_acc"] <= 1
        (ck,) = st.list_checkpoints(run_id=run["run_id"]).to_dict("records")
        loaded = st.get_tensors(ck["artifact_sha"])
    from safetensors.torch import load_file

    original = load_file(str(w))
    assert loaded.keys() == original.keys() and all(torch.equal(loaded[k], original[k]) for k in original)


def test_ls_into_a_pipe_that_closes_early_ends_quietly(tmp_path):
    """`zooscope ls runs | head -1`: the reader leaves while ls still writes; no traceback."""
    s = tmp_path / "store"
    with store.open_store(s) as st:
        zoo_id = st.create_zoo("many")
        st.add_runs([{"zoo_id": zoo_id, "name": f"run {i}", "seed": i, "status": "done"} for i in range(3000)])
    proc = subprocess.Popen([sys.executable, "-m", "engine.cli", "--store", str(s), "ls", "runs"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline()  # the header, then the reader goes away with most of the table unread
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141, err
    assert err == ""


def test_train_checks_a_user_factory_once(tmp_path, capsys, clean_plugins):
    """`zooscope train` validates the sweep, then the dispatcher checks it before queueing: one child process."""
    path = tmp_path / "store"
    plugin_fixtures.write_plugins(path / "models")
    (path / "zooscope.toml").write_text('[plugins]\npaths = ["models/"]\n')
    sweep = tmp_path / "mine.toml"
    sweep.write_text(plugin_fixtures.FACTORY_SWEEP)
    started = plugin_fixtures.count_factory_checks(clean_plugins)
    assert main(["--store", str(path), "train", str(sweep)]) == 0, capsys.readouterr().err
    assert len(started) == 1
