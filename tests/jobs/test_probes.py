import pytest

from engine.jobs import ProbeService


def test_probe_is_computed_once_stored_and_reused(owner, tiny_sweep):
    st, disp = owner
    zoo_id, job_id = disp.submit_sweep(tiny_sweep())
    disp.run_until_done([job_id])
    ckpts = st.list_checkpoints(zoo_id=zoo_id)
    final = ckpts[ckpts["step"] == 30]["checkpoint_id"].tolist()
    probes = ProbeService(disp)
    first = probes.request("evaluate", {"split": "test"}, final, owner="alice")
    assert first.state == "queued"
    again = probes.request("evaluate", {"split": "test"}, final, owner="bob")  # joins, does not queue twice
    assert again.state in ("queued", "running") and again.job["job_id"] == first.job["job_id"]
    disp.run_until_done([first.job["job_id"]])
    done = probes.request("evaluate", {"split": "test"}, final, owner="bob")
    assert done.state == "done" and len(st.list_jobs(kind="probe")) == 1
    runs = st.runs_table(zoo_id).set_index("last_checkpoint_id").loc[final]
    # the same test set, all samples: equal to the accuracy recorded at training time (eval_size covers it)
    assert done.result.summary["accuracy"] == pytest.approx(runs["final_test_acc"].tolist(), abs=1e-6)
    assert list(done.result.arrays["loss"]) == pytest.approx(done.result.summary["loss"])


def test_probe_requests_are_validated_before_queuing(owner, tiny_sweep):
    st, disp = owner
    probes = ProbeService(disp)
    with pytest.raises(ValueError, match="unknown probe 'magic'"):
        probes.request("magic", {}, ["x"])
    with pytest.raises(ValueError, match="split"):
        probes.request("evaluate", {"split": "validation"}, ["x"])
    with pytest.raises(ValueError, match="takes 1 to any number of checkpoints; got 0"):
        probes.request("evaluate", {}, [])
    assert st.list_jobs().empty
