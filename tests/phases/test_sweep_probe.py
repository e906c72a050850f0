"""The ``sweep.cell`` probe and ``probe_phase_cells`` on a tiny trained zoo: values equal the engine's own calls."""

import numpy as np
import pytest
import torch

from engine.jobs import ProbeService, phase_cells, phase_cells_status, probe_phase_cells
from engine.jobs.probe_job import ProbeInputs
from engine.probes.connectivity import align_models, apply_alignment, barrier, interpolate
from engine.probes.core import resolve_data
from engine.probes.landscape import hessian_top_eigs
from engine.probes.representations import capture_activations, linear_cka

P = {"n_samples": 128, "cka_samples": 128, "hessian_max_iter": 40, "trace_probes": 4, "alphas": 9}


@pytest.fixture(scope="module")
def swept(zoo):
    st, disp, zoo_id = zoo
    requests = probe_phase_cells(disp, zoo_id, params=P, compute_here=True)
    return st, disp, zoo_id, requests


def test_cells_group_seeds(zoo):
    st, _, zoo_id = zoo
    cells = phase_cells(st, zoo_id)
    assert [c.hparams for c in cells] == [{"lr": 0.05}, {"lr": 0.2}]
    assert all(len(c.run_ids) == 2 == len(c.checkpoint_ids) for c in cells)
    every = phase_cells(st, zoo_id, checkpoints="all")
    assert all(len(c.checkpoint_ids) == 2 * 3 for c in every)  # linear:2 -> steps 0, 20, 40
    with pytest.raises(ValueError, match="checkpoints must be 'final' or 'all'; got 'last'"):
        phase_cells(st, zoo_id, checkpoints="last")


def test_values_match_direct_engine_calls(swept):
    st, _, _, requests = swept
    assert [r.status.state for r in requests] == ["done", "done"]
    req = requests[1]
    values = req.status.result.summary["values"]
    service = ProbeService.__new__(ProbeService)
    service.store = st
    refs = [service._ref(c) for c in req.checkpoint_ids]
    from engine.jobs.probe_job import CheckpointRef

    a, b = ProbeInputs(st.path, [CheckpointRef.model_validate(r) for r in refs]).all
    data = resolve_data(a.dataset, "train", n_samples=P["n_samples"], seed=0)
    top = hessian_top_eigs(a.model, a.params, data, k=1, max_iter=P["hessian_max_iter"], seed=0)
    assert values["hessian_top"][0] == pytest.approx(float(top.eigenvalues[0]), rel=1e-6)
    naive = barrier(interpolate(a.model, a.state, b.state, data, alphas=P["alphas"]), kind="max_minus_linear")
    assert values["barrier_naive"][0] == pytest.approx(naive.value, rel=1e-5, abs=1e-7)
    assert values["barrier_naive"][0] == values["barrier_naive"][1]  # one pair: both seeds share it
    al = align_models(a.model, a.state, b.state, data, method="weight", seed=0)
    b_aligned = apply_alignment(a.model, b.state, al, data)
    aligned = barrier(interpolate(a.model, a.state, b_aligned, data, alphas=P["alphas"]), kind="max_minus_linear")
    assert values["barrier_aligned"][0] == pytest.approx(aligned.value, rel=1e-5, abs=1e-7)
    x, y = resolve_data(a.dataset, "test")
    fa = capture_activations(a.model, a.state, (x, y), max_samples=P["cka_samples"], seed=0)
    fb = capture_activations(b.model, b.state, (x, y), max_samples=P["cka_samples"], seed=0)
    hidden = [k for k in fa if k != "output"]
    expected = np.mean([linear_cka(fa[k], fb[k]) for k in hidden])
    assert values["cka_mean"][0] == pytest.approx(expected, rel=1e-6)
    train_acc = 1 - values["train_error"][0]
    test_acc = 1 - values["test_error"][0]
    assert values["gap"][0] == pytest.approx(train_acc - test_acc)


def test_metric_rows_become_probe_columns(swept):
    st, _, zoo_id, requests = swept
    table = st.runs_table(zoo_id).set_index("run_id")
    for col in ("probe_hessian_top", "probe_barrier_naive", "probe_barrier_aligned", "probe_cka_mean", "probe_gap"):
        assert col in table.columns and table[col].notna().all(), col
    # the template's sweep (default parameters) wrote its rows first; metric rows are first-write-wins
    for req in phase_cells_status(st_disp(swept), zoo_id):
        s = req.status.result.summary
        for run_id, v in zip(s["run_ids"], s["values"]["hessian_top"]):
            assert table.loc[run_id, "probe_hessian_top"] == pytest.approx(v)
    assert requests[0].status.result.summary["values"]["hessian_top"][0] != pytest.approx(
        table.loc[requests[0].status.result.summary["run_ids"][0], "probe_hessian_top"])
    probe_rows = st.metrics(zoo_id=zoo_id, split="probe")
    assert set(probe_rows["step"]) == {40}  # each run's final step


def st_disp(swept):
    return swept[1]


def test_second_sweep_queues_nothing(swept):
    st, disp, zoo_id, _ = swept
    again = probe_phase_cells(disp, zoo_id, params=P)
    assert [r.status.state for r in again] == ["done", "done"]
    other = {**P, "seed": 1}  # a different request: queued once, then joined
    n_jobs = len(st.list_jobs(kind="probe"))
    first = probe_phase_cells(disp, zoo_id, params=other)
    assert [r.status.state for r in first] == ["queued", "queued"]
    assert len(st.list_jobs(kind="probe")) == n_jobs + 2
    second = probe_phase_cells(disp, zoo_id, params=other)
    assert len(st.list_jobs(kind="probe")) == n_jobs + 2
    assert [r.status.job["job_id"] for r in second] == [r.status.job["job_id"] for r in first]
    assert [r.status.state for r in phase_cells_status(disp, zoo_id, params=other)] == ["queued", "queued"]


def test_single_checkpoint_kinds_get_one_request_per_checkpoint(swept):
    st, disp, zoo_id, _ = swept
    reqs = probe_phase_cells(disp, zoo_id, "weights.norm", compute_here=True)
    assert len(reqs) == 2  # weights.norm takes any number: one per cell
    norms = reqs[0].status.result.summary["norm"]
    ck = st.get_checkpoint(reqs[0].checkpoint_ids[0])
    state = st.get_tensors(ck["artifact_sha"])
    assert norms[0] == pytest.approx(float(torch.cat([v.flatten() for v in state.values()]).norm()), rel=1e-5)
    spectra = phase_cells_status(disp, zoo_id, "curvature.spectrum")  # takes exactly one: one per checkpoint
    assert len(spectra) == 4 and all(len(r.checkpoint_ids) == 1 for r in spectra)
