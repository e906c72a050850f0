"""The ``prune.cell`` probe on the tiny trained zoo: its values equal the engine's own calls on pruned networks."""

import math

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from engine.jobs import ProbeService, probe_phase_cells
from engine.jobs.builtin_probes.phases import PruneCellParams
from engine.jobs.probe_job import CheckpointRef, ProbeInputs
from engine.probes import (
    barrier,
    evaluate_points,
    fine_tune,
    flatten_params,
    hessian_top_eigs,
    interpolate,
    prune,
    pruned_rows,
    resolve_data,
)

P = {"densities": [0.5, 0.2], "n_samples": 64, "cka_samples": 64, "hessian_max_iter": 20, "trace_probes": 2,
     "alphas": 5, "align": "none"}


@pytest.fixture(scope="module")
def pruned(zoo):
    st, disp, zoo_id = zoo
    requests = probe_phase_cells(disp, zoo_id, "prune.cell", P, compute_here=True)
    tuned = probe_phase_cells(disp, zoo_id, "prune.cell", {**P, "fine_tune_steps": 5, "metrics": ["evaluation"]},
                              compute_here=True)
    fixed = probe_phase_cells(disp, zoo_id, "prune.cell", {**P, "fine_tune_steps": 5, "fine_tune_batch_size": 3,
                                                            "metrics": ["evaluation"]}, compute_here=True)
    return st, requests, tuned, fixed


def _loaded(st, checkpoint_ids):
    service = ProbeService.__new__(ProbeService)
    service.store = st
    return ProbeInputs(st.path, [CheckpointRef.model_validate(service._ref(c)) for c in checkpoint_ids]).all


def _test_error(ck, params):
    theta, layout = flatten_params(params)
    _, acc = evaluate_points(ck.model, theta[None], resolve_data(ck.dataset, "test"), buffers=ck.buffers,
                             layout=layout)
    return 1.0 - float(acc[0])


def test_values_match_direct_engine_calls_on_pruned_networks(pruned):
    st, requests, *_ = pruned
    assert [r.status.state for r in requests] == ["done", "done"]
    s = requests[1].status.result.summary
    assert s["densities"] == [0.2, 0.5]  # sorted
    a, b = _loaded(st, requests[1].checkpoint_ids)
    pa, pb = prune(a.model, a.params, 0.8), prune(b.model, b.params, 0.8)
    v = s["values"]
    assert v["density_achieved"][0][0] == pytest.approx(pa.density)
    assert v["test_error"][0][0] == pytest.approx(_test_error(a, pa.params), abs=1e-9)
    data = resolve_data(a.dataset, "train", n_samples=P["n_samples"], seed=0)
    top = hessian_top_eigs(a.model, pa.params, data, k=1, max_iter=P["hessian_max_iter"], seed=0)
    assert v["hessian_top"][0][0] == pytest.approx(float(top.eigenvalues[0]), rel=1e-6)
    curve = interpolate(a.model, {**pa.params, **a.buffers}, {**pb.params, **b.buffers}, data, alphas=P["alphas"])
    assert v["barrier_naive"][0][0] == pytest.approx(barrier(curve, kind="max_minus_linear").value, rel=1e-5, abs=1e-7)
    assert all(x is None for x in v["barrier_aligned"][0])  # align="none"
    assert -1e-6 <= v["cka_output"][0][1] <= 1 + 1e-6 and v["cka_output"][0][1] == pytest.approx(v["cka_output"][1][1])
    arrays = requests[1].status.result.arrays
    assert arrays["test_error"].shape == (2, 2)


def test_fine_tuned_values_equal_a_direct_fine_tune(pruned):
    st, _, tuned, _ = pruned
    s = tuned[0].status.result.summary
    assert s["fine_tune_steps"] == 5 and set(s["values"]) >= {"test_error", "density_achieved"}
    assert "hessian_top" not in s["values"]
    (ck, _) = _loaded(st, tuned[0].checkpoint_ids)
    pr = prune(ck.model, ck.params, 0.5)
    ft, _ = fine_tune(ck.model, pr, (ck.dataset.x_train, ck.dataset.y_train), ck.config.optim, steps=5,
                      batch_size=ck.config.batch_size, buffers=ck.buffers, seed=ck.config.seed)
    assert all(torch.all(ft.params[k][~m] == 0) for k, m in pr.masks.items())
    assert s["values"]["test_error"][0][1] == pytest.approx(_test_error(ck, ft.params), abs=1e-9)


def test_a_fixed_fine_tuning_batch_size_replaces_the_runs_own(pruned):
    # Zhou et al. retrain every temperature alike when the dense batch size is the temperature
    st, _, tuned, fixed = pruned
    (ck, _) = _loaded(st, fixed[0].checkpoint_ids)
    assert ck.config.batch_size != 3
    pr = prune(ck.model, ck.params, 0.5)
    ft, _ = fine_tune(ck.model, pr, (ck.dataset.x_train, ck.dataset.y_train), ck.config.optim, steps=5,
                      batch_size=3, buffers=ck.buffers, seed=ck.config.seed)
    got = fixed[0].status.result.summary["values"]["test_error"][0][1]
    assert got == pytest.approx(_test_error(ck, ft.params), abs=1e-9)
    own = tuned[0].status.result.summary["values"]["test_error"][0][1]
    own_ft, _ = fine_tune(ck.model, pr, (ck.dataset.x_train, ck.dataset.y_train), ck.config.optim, steps=5,
                          batch_size=ck.config.batch_size, buffers=ck.buffers, seed=ck.config.seed)
    assert own == pytest.approx(_test_error(ck, own_ft.params), abs=1e-9)  # the default is still the run's own


def test_rows_join_runs_and_densities(pruned):
    _, requests, *_ = pruned
    s = requests[0].status.result.summary
    rows = pruned_rows(s["run_ids"], s["densities"], s["values"])
    assert len(rows) == 4 and set(rows["density"]) == {0.2, 0.5}
    assert np.isnan(rows["barrier_aligned"]).all() and not math.isnan(rows["test_error"].iloc[0])


def test_params_are_checked():
    assert PruneCellParams(densities=[0.5, 0.1, 0.5]).densities == (0.1, 0.5)
    with pytest.raises(ValidationError, match=r"densities must be fractions in \(0, 1\]"):
        PruneCellParams(densities=[0.0, 0.5])
    with pytest.raises(ValidationError, match="fine_tune_steps"):
        PruneCellParams(fine_tune_steps=-1)
    assert PruneCellParams().fine_tune_batch_size is None
    with pytest.raises(ValidationError, match="fine_tune_batch_size"):
        PruneCellParams(fine_tune_batch_size=0)
