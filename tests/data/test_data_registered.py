"""Data sets registered once by name in a store: recorded, mirrored for workers, used by a real job."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

import store
from engine import data as zdata
from engine.cli import main
from engine.config import load_sweep
from engine.data import DatasetError, describe_registration, use_registered_folder
from engine.datasets import register_dataset
from engine.jobs import Dispatcher, ProbeService


def _folder(root, n=10, seed=0):
    rng = np.random.default_rng(seed)
    for c in ("ants", "bees"):
        (root / c).mkdir(parents=True)
        for i in range(n):
            a = (rng.random((6, 6, 3)) * 200 + (55 if c == "bees" else 0)).astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(a).save(buf, format="PNG")
            (root / c / f"{i}.png").write_bytes(buf.getvalue())
    return root


def test_registration_records_normalisation_hash_and_classes(tmp_path):
    root = _folder(tmp_path / "imgs")
    spec, info = describe_registration("bugs", "imagefolder", str(root))
    assert spec == {"kind": "imagefolder", "path": str(root.absolute()), "label": None, "options": {},
                    "seed": 0, "test_size": 0.25}
    assert info["class_names"] == ["ants", "bees"] and info["input_shape"] == [3, 6, 6]
    assert info["n_files"] == 20 and len(info["sha256"]) == 64 and info["task"] == "classification"
    assert len(info["normalization"]["mean"]) == 3 and info["describe"].startswith("bugs: classification")
    with pytest.raises(DatasetError, match=r"'mnist1d' is a built-in data set; register yours under another name"):
        describe_registration("mnist1d", "imagefolder", str(root))
    with pytest.raises(DatasetError, match=r"a registered data set's name is 1-64 letters, digits"):
        describe_registration("../etc", "imagefolder", str(root))


def test_a_registered_name_loads_with_the_recorded_statistics_and_notices_changes(tmp_path):
    root = _folder(tmp_path / "imgs")
    with store.open_store(tmp_path / "store") as st:
        register_dataset(st, {"name": "bugs", "kind": "imagefolder", "path": str(root)})
        with pytest.raises(ValueError, match=r"a data set named 'bugs' is already registered"):
            register_dataset(st, {"name": "bugs", "kind": "imagefolder", "path": str(root)})
        mirror = json.loads((st.layout.datasets / "bugs.json").read_text())
        recorded = st.get_dataset("bugs")
    assert mirror["info"] == recorded["info"] and mirror["spec"] == recorded["spec"]
    use_registered_folder(tmp_path / "store" / "datasets")
    assert "bugs" in zdata.available(kind="registered") and zdata.kind_of("bugs") == "registered"
    other_seed = zdata.load({"name": "bugs", "seed": 3})
    assert other_seed.name == "bugs" and other_seed.class_names == ["ants", "bees"]
    assert other_seed.normalization["mean"] == pytest.approx(mirror["info"]["normalization"]["mean"])
    # the recorded numbers, not this split's: its own training mean is not exactly 0
    assert float(other_seed.x_train.mean((0, 2, 3)).abs().max()) > 1e-6
    with pytest.raises(DatasetError, match=r"dataset 'bugs' has no option 'size'; its options are: none"):
        zdata.load({"name": "bugs", "options": {"size": "4x4"}})
    (root / "ants" / "0.png").write_bytes((root / "ants" / "1.png").read_bytes())
    with pytest.raises(DatasetError, match=r"registered data set 'bugs': the files under .* changed since it was "
                                           r"registered \(content hash"):
        zdata.load("bugs")


def test_a_registered_data_set_trains_in_a_real_worker_and_is_probed(tmp_path):
    root = _folder(tmp_path / "imgs", n=16)
    assert main(["--store", str(tmp_path / "store"), "datasets", "add", "bugs", "--kind", "imagefolder",
                 "--path", str(root), "--option", "channels=rgb"]) == 0
    st = store.open_store(tmp_path / "store")
    disp = Dispatcher(st)  # mirrors the table and resolves the name in this process
    try:
        sweep = load_sweep({"name": "bugs-zoo", "base": {
            "dataset": {"name": "bugs"}, "arch": {"name": "cnn2d", "width": 4, "depth": 1}, "batch_size": 8,
            "steps": 6, "checkpoints": [0, 6]}, "grid": {"seed": [0]}})
        zoo_id, job_id = disp.submit_sweep(sweep)
        (job,) = disp.run_until_done([job_id])  # a worker process, which never opens the catalog
        assert job["status"] == "done", job
        ckpts = st.list_checkpoints(zoo_id=zoo_id).sort_values("step")
        last = ckpts["checkpoint_id"].iloc[-1]
        done = ProbeService(disp).compute_here("evaluate", {"split": "test"}, [last])
        assert done.state == "done"
        assert done.result.summary["loss"][0] == pytest.approx(float(ckpts["test_loss"].iloc[-1]), rel=1e-4)
    finally:
        disp.stop(kill_workers=True)
        st.close()


def test_datasets_cli_hands_over_to_a_running_owner_and_lists(tmp_path, capsys):
    root = _folder(tmp_path / "imgs")
    st = store.open_store(tmp_path / "store")
    disp = Dispatcher(st)
    try:
        assert main(["--store", str(tmp_path / "store"), "datasets", "add", "bugs", "--kind", "imagefolder",
                     "--path", str(root)]) == 0
        assert "handed to that process" in capsys.readouterr().out
        disp.tick()  # the owner takes the request, loads the folder itself and records it
        assert st.get_dataset("bugs")["info"]["class_names"] == ["ants", "bees"]
        assert main(["--store", str(tmp_path / "store"), "datasets", "ls"]) == 0  # from the mirror
        assert "bugs\timagefolder" in capsys.readouterr().out
    finally:
        disp.stop(kill_workers=True)
        st.close()
    assert main(["--store", str(tmp_path / "store"), "datasets", "add", "bad", "--kind", "imagefolder",
                 "--path", str(tmp_path / "nowhere")]) == 2
    assert "does not exist or is not a folder" in capsys.readouterr().err


def test_registering_needs_the_admin_role_when_sign_in_is_on(tmp_path):
    from engine.auth import AccessPolicy, PermissionDenied, User, hash_password, save_users

    users = tmp_path / "users.toml"
    pw = hash_password("pw", n=16, r=1, p=1)
    save_users(users, {"ed": User("ed", "editor", pw), "ada": User("ada", "admin", pw)})
    policy = AccessPolicy("password", users)
    root = _folder(tmp_path / "imgs", n=2)
    with store.open_store(tmp_path / "store") as st:
        with pytest.raises(PermissionDenied, match=r"user 'ed' may not register data sets \(server-side paths\): "
                                                   r"that needs the role 'admin'"):
            register_dataset(st, {"name": "bugs", "kind": "imagefolder", "path": str(root), "owner": "ed"},
                             access=policy)
        assert st.list_datasets().empty
        register_dataset(st, {"name": "bugs", "kind": "imagefolder", "path": str(root), "owner": "ada"},
                         access=policy)
        assert st.get_dataset("bugs")["owner"] == "ada"


def test_a_sweep_reading_a_server_path_needs_the_admin_role(tmp_path):
    from engine.auth import AccessPolicy, PermissionDenied, User, hash_password, save_users
    from engine.jobs import LocalExecutor

    users = tmp_path / "users.toml"
    pw = hash_password("pw", n=16, r=1, p=1)
    save_users(users, {"ed": User("ed", "editor", pw), "ada": User("ada", "admin", pw)})
    np.savez(tmp_path / "d.npz", x=np.zeros((10, 3)), y=np.arange(10) % 2)
    sweep = load_sweep({"name": "p", "base": {"dataset": {"name": "npz", "path": str(tmp_path / "d.npz")},
                                              "steps": 5, "batch_size": 4}})
    with store.open_store(tmp_path / "store") as st:
        disp = Dispatcher(st, executor=LocalExecutor(st.path, max_workers=1), access=AccessPolicy("password", users))
        with pytest.raises(PermissionDenied, match=r"user 'ed' may not register data sets \(server-side paths\)"):
            disp.submit_sweep(sweep, owner="ed")
        assert st.list_zoos().empty
        disp.submit_sweep(sweep, owner="ada")  # queued, never started here
        assert len(st.list_zoos()) == 1


def test_a_loss_that_does_not_fit_a_registered_task_is_refused_before_queueing(tmp_path):
    from engine.config import ConfigError
    from engine.train import check_registered

    root = _folder(tmp_path / "imgs", n=2)
    with store.open_store(tmp_path / "store") as st:
        register_dataset(st, {"name": "bugs", "kind": "imagefolder", "path": str(root)})
    use_registered_folder(tmp_path / "store" / "datasets")
    sweep = load_sweep({"name": "x", "base": {"dataset": {"name": "bugs"}, "loss": "mse"}})
    with pytest.raises(ConfigError, match=r"base.loss: loss 'mse' is for regression but 'bugs' is a classification "
                                          r"data set; use loss='auto' \(here 'cross_entropy'\)"):
        check_registered(sweep)
