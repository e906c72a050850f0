"""Connectivity probes through the job code path: stored curves and barriers rebuild the engine's results."""

import numpy as np
import pytest

from engine.jobs import ProbeService
from engine.jobs.builtin_probes.connectivity import PathsResult
from engine.probes.connectivity import BarrierMatrix, Instability, LayerwiseBarriers, SingularAlignment, barrier


@pytest.fixture(scope="module")
def trained(tmp_path_factory, trained_zoo):
    sweep = {"name": "lmc", "base": {"dataset": {"name": "moons"}, "arch": {"name": "mlp", "width": 16},
                                     "batch_size": 32, "steps": 60, "checkpoints": [60]},
             "grid": {"seed": [0, 1, 2]}}
    with trained_zoo(tmp_path_factory.mktemp("lmc"), sweep) as (st, disp, zoo_id):
        ck = st.list_checkpoints(zoo_id=zoo_id)
        yield st, disp, ck[ck["step"] == 60]["checkpoint_id"].tolist(), st.runs_table(zoo_id)


def _done(disp, probe, params, ids):
    """The probe job's code path in this process (no worker start), stored; its status read back."""
    done = ProbeService(disp).compute_here(probe, params, ids)
    assert done.state == "done", done
    return done


def _compute(disp, probe, params, ids):
    """The stored result (summary and arrays, as on disk)."""
    return _done(disp, probe, params, ids).result


def _typed(disp, probe, params, ids):
    """The result as the probe kind's typed result (what the pages receive)."""
    return _done(disp, probe, params, ids).typed()


def test_paths_endpoints_equal_the_models_and_alignment_is_checked(trained):
    st, disp, ids, runs = trained
    done = _done(disp, "connectivity.paths", {"methods": ["none", "weight"], "alphas": 5}, ids[:2])
    res, paths = done.result, done.typed()
    assert isinstance(paths, PathsResult) and paths.check_max_diff == res.summary["check_max_diff"]
    assert len(res.summary["curves"]) == 4 and "curve03.loss" in res.arrays  # the keys on disk
    curves = paths.curves
    assert len(curves) == 4  # 2 methods x 2 splits
    test = {c.label: c for c in curves if c.split == "test"}
    final_loss = runs.set_index("last_checkpoint_id").loc[ids[:2], "final_test_loss"].to_numpy()
    for c in test.values():  # alignment permutes B, so both paths end at B's loss
        assert c.loss[0] == pytest.approx(final_loss[0], rel=1e-4)
        assert c.loss[-1] == pytest.approx(final_loss[1], rel=1e-4)
        assert barrier(c.loss, kind="max_minus_linear").value >= -1e-9
    assert all(v < 1e-3 for v in res.summary["check_max_diff"].values())


def test_layerwise_and_matrix_results_rebuild(trained):
    st, disp, ids, runs = trained
    lw = _typed(disp, "connectivity.layerwise", {"alphas": 5}, ids[:2])
    assert isinstance(lw, LayerwiseBarriers)
    assert len(lw.groups) == len(lw.from_a) == len(lw.from_b)
    mat = _typed(disp, "connectivity.matrix", {"alphas": 5}, ids)
    assert isinstance(mat, BarrierMatrix)
    assert mat.naive.shape == (3, 3) and np.allclose(np.diag(mat.naive), 0.0, atol=1e-6)
    assert np.allclose(mat.naive, mat.naive.T, atol=1e-6)


def test_instability_probe_replays_the_run_and_matches_the_engine(trained):
    from engine.config import TrainSpec
    from engine.jobs.builtin_probes.connectivity import instability_steps
    from engine.probes.connectivity import instability_analysis

    st, disp, ids, runs = trained
    got = _typed(disp, "connectivity.instability", {"n_steps": 3, "alphas": 5}, ids[:1])
    assert isinstance(got, Instability)
    assert list(got.spawn_steps) == instability_steps(60, 3) == [0, 1, 30]
    spec = TrainSpec.model_validate(st.get_run(runs.set_index("last_checkpoint_id").loc[ids[0], "run_id"])["config"])
    direct = instability_analysis(spec, [0, 1, 30], seeds=(1, 2), alphas=5)
    np.testing.assert_allclose(got.barrier, direct.barrier, atol=1e-6)
    np.testing.assert_allclose(got.child_error, direct.child_error, atol=1e-6)
    assert (got.kind, got.metric, got.split) == ("max_minus_mean", "error", "test")


@pytest.mark.parametrize("origin", ["logged", "imported"])
def test_instability_refuses_runs_whose_optimiser_settings_are_placeholders(trained, origin):
    from engine.jobs.probe_job import CheckpointRef, check_replayable, get_probe_kind

    st, disp, ids, runs = trained
    run_id = st.get_checkpoint(ids[2])["run_id"]
    st.update_run(run_id, origin=origin)
    try:
        svc = ProbeService(disp)
        n_jobs = len(st.list_jobs())
        with pytest.raises(ValueError, match=rf"re-trains run .* but the run was {origin}.*\(origin '{origin}'\): "
                                             "its optimiser settings are placeholders"):
            svc.request("connectivity.instability", {"n_steps": 2}, ids[2:3])
        assert len(st.list_jobs()) == n_jobs  # nothing queued
        with pytest.raises(ValueError, match="optimiser settings are placeholders"):
            svc.compute_here("connectivity.instability", {"n_steps": 2}, ids[2:3])
        # a probe that does not re-train takes the same run
        assert svc.status("connectivity.layerwise", {"alphas": 3}, ids[1:3]).state in ("missing", "done")
        ref = CheckpointRef.model_validate(svc._ref(ids[2]))  # what a worker is handed: it checks again
        assert ref.origin == origin
        with pytest.raises(ValueError, match="placeholders"):
            check_replayable(get_probe_kind("connectivity.instability"), [ref])
    finally:
        st.update_run(run_id, origin="trained")


def test_instability_steps_start_at_zero_and_stop_at_half_the_run():
    from engine.jobs.builtin_probes.connectivity import instability_steps

    assert instability_steps(1500, 6) == [0, 1, 5, 27, 143, 750]
    assert instability_steps(1, 6) == [0]
    ks = instability_steps(10_000, 12)
    assert ks[0] == 0 and ks[-1] == 5000 and ks == sorted(set(ks))


def test_singular_probe_rebuilds_the_engine_result(trained):
    from engine.nets import permutation_spec
    from engine.probes.connectivity import align_models, singular_vector_alignment

    st, disp, ids, runs = trained
    got = _typed(disp, "connectivity.singular", {}, ids[:2])
    assert isinstance(got, SingularAlignment)
    from engine.jobs.probe_job import CheckpointRef, ProbeInputs

    inputs = ProbeInputs(st.path, [CheckpointRef.model_validate(ProbeService(disp)._ref(i)) for i in ids[:2]])
    a, b = inputs.load(0), inputs.load(1)
    al = align_models(a.model, a.state, b.state, a.dataset, method="weight", seed=0)
    want = singular_vector_alignment(a.state, b.state, al, permutation_spec(a.model))
    assert list(got.layers) == [k for k in a.model.state_dict() if k in want.layers]  # in the model's order
    want = singular_vector_alignment(a.state, b.state, al, permutation_spec(a.model), layers=got.layers)
    assert len(got.layers) >= 2
    for field in ("singular_values_a", "cos_left_before", "cos_left_after", "cos_right_after"):
        for g, w in zip(getattr(got, field), getattr(want, field)):
            np.testing.assert_allclose(g, w, atol=1e-5)
    # weight matching maximises <A, PB>, so it can only bring B closer to A
    assert (got.distance_after <= got.distance_before + 1e-6).all()


@pytest.mark.parametrize(("probe", "step"), [("connectivity.paths", 30), ("connectivity.layerwise", 31),
                                             ("connectivity.merge", 32)])
def test_non_finite_endpoint_is_named_before_alignment(trained, probe, step):
    """NaN/inf weights fail at loading, naming the tensor and the counts (not as a bad permutation spec)."""
    import store

    st, disp, ids, runs = trained
    row = st.get_checkpoint(ids[1])
    state = store.get_tensors_at(st.path, row["artifact_sha"])
    name = next(k for k, v in state.items() if v.is_floating_point() and v.ndim == 2)
    state[name].view(-1)[:3] = float("nan")
    state[name].view(-1)[3] = float("-inf")
    bad = st.add_checkpoint(row["run_id"], step, st.put_tensors(state))  # before the run's last checkpoint
    with pytest.raises(ValueError, match=rf"checkpoint {bad[:8]} \(run .* step {step}\) holds non-finite weights "
                                         rf"\(3 NaN, 1 inf in tensor '{name}'\).*pick an earlier checkpoint"):
        ProbeService(disp).compute_here(probe, {"align": "weight"} if probe != "connectivity.paths" else {},
                                        [ids[0], bad])
