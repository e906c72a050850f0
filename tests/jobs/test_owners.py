"""Every run, probe, report and job records who made it, on every path."""

import pytest
import torch

from engine.auth import AccessPolicy, PermissionDenied, User, save_users
from engine.config import ArchSpec, DatasetSpec
from engine.importer import ImportedWeights, record_import
from engine.jobs import ProbeService

SWEEP = {"name": "owners", "base": {"dataset": {"name": "moons"}, "arch": {"name": "mlp", "width": 8},
                                    "batch_size": 32, "steps": 20, "checkpoints": "linear:2"},
         "grid": {"seed": [0]}}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, trained_zoo):
    with trained_zoo(tmp_path_factory.mktemp("owners"), SWEEP) as (st, disp, zoo_id):
        yield st, disp, zoo_id


def _last_checkpoint(st, zoo_id):
    ckpts = st.list_checkpoints(zoo_id=zoo_id)
    return [ckpts.sort_values("step")["checkpoint_id"].iloc[-1]]


def test_a_shared_probe_is_computed_once_and_keeps_its_first_requester(zoo):
    st, disp, zoo_id = zoo
    probes, ckpt = ProbeService(disp), _last_checkpoint(st, zoo_id)
    first = probes.request("evaluate", {"split": "train"}, ckpt, owner="alice")
    second = probes.request("evaluate", {"split": "train"}, ckpt, owner="bob")
    assert second.job["job_id"] == first.job["job_id"] and second.job["owner"] == "alice"
    disp.run_until_done([first.job["job_id"]])
    done = probes.request("evaluate", {"split": "train"}, ckpt, owner="bob")
    assert done.state == "done" and done.probe["owner"] == "alice"
    jobs = st.list_jobs(kind="probe")
    assert len(jobs[jobs["job_id"] == first.job["job_id"]]) == 1 and len(st.list_probes("evaluate")) >= 1


def test_a_probe_computed_in_process_records_its_owner(zoo):
    st, disp, zoo_id = zoo
    status = ProbeService(disp).compute_here("evaluate", {"split": "test", "n_samples": 64},
                                             _last_checkpoint(st, zoo_id), owner="carol")
    assert status.state == "done" and status.probe["owner"] == "carol"


def test_a_viewers_probe_request_is_refused(zoo, tmp_path):
    st, disp, zoo_id = zoo
    save_users(tmp_path / "users.toml", {"val": User("val", "viewer")})
    disp.access = AccessPolicy("password", tmp_path / "users.toml")
    try:
        with pytest.raises(PermissionDenied, match="'val' may not launch jobs"):
            ProbeService(disp).request("evaluate", {"split": "test", "n_samples": 32},
                                       _last_checkpoint(st, zoo_id), owner="val")
    finally:
        disp.access = None


def test_imports_record_their_owner_and_check_the_role(zoo, tmp_path):
    st, _, _ = zoo
    arch = ArchSpec(name="mlp", width=4, depth=1)
    from engine.config import TrainSpec

    config = TrainSpec(dataset=DatasetSpec(name="moons"), arch=arch, steps=1, checkpoints=[1])
    imported = ImportedWeights(config, {"w": torch.zeros(2)}, {"test_acc": 0.5})
    save_users(tmp_path / "users.toml", {"val": User("val", "viewer"), "ed": User("ed", "editor")})
    access = AccessPolicy("password", tmp_path / "users.toml")
    runs_before = len(st.list_runs())
    with pytest.raises(PermissionDenied, match="'val' may not import checkpoints"):
        record_import(st, "imports", imported, name="x", owner="val", access=access)
    assert len(st.list_runs()) == runs_before
    run_id = record_import(st, "imports", imported, name="x", owner="ed", access=access)
    assert st.get_run(run_id)["owner"] == "ed" and st.get_zoo("imports")["owner"] == "ed"


def test_reports_record_their_author(zoo):
    st, _, _ = zoo
    report_id = st.add_report("t", {"items": []}, author="dana")
    assert st.get_report(report_id)["author"] == "dana"
