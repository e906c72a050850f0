"""The functional-dimension probe through the job system: a run's trajectory, stored once, read back
as the engine's dataclass, equal to a direct call, and its ranks in the zoo's runs table."""

import math

import numpy as np
import pytest
import torch

from engine.jobs import ProbeService
from engine.jobs.builtin_probes.functional_dimension import FUNCTIONAL_DIMENSION_RESULT
from engine.jobs.probe_job import ProbeInputs, ProbeJobSpec
from engine.probes import FunctionalDimensionCurve, functional_dimension

PROBE = "landscape.functional_dimension"


@pytest.fixture(scope="module")
def trained(tmp_path_factory, trained_zoo):
    sweep = {"name": "fd", "base": {"dataset": {"name": "moons"}, "arch": {"name": "mlp", "width": 6, "depth": 2},
                                    "batch_size": 32, "steps": 40, "checkpoints": "linear:3"}}
    with trained_zoo(tmp_path_factory.mktemp("fd"), sweep) as (st, disp, zoo_id):
        yield st, disp, zoo_id, st.list_checkpoints(zoo_id=zoo_id).sort_values("step")


def test_the_probe_stores_a_curve_over_the_runs_checkpoints(trained):
    st, disp, zoo_id, ckpts = trained
    ids = ckpts["checkpoint_id"].tolist()
    done = ProbeService(disp).compute_here(PROBE, {"oversample": 2.0}, ids)
    assert done.state == "done", done
    curve = FUNCTIONAL_DIMENSION_RESULT.from_stored(done.result)
    assert isinstance(curve, FunctionalDimensionCurve)
    n_params = 2 * 6 + 6 + 6 * 6 + 6 + 6 * 2 + 2  # moons: 2 inputs, 2 classes
    assert curve.n_params == n_params and curve.n_hidden_neurons == 12 and curve.n_outputs == 2
    assert curve.n_inputs == math.ceil(2.0 * n_params / 2) and curve.inputs == "gaussian"
    assert curve.bound == curve.symmetry_bound == n_params - 12
    assert list(curve.steps) == ckpts["step"].tolist()
    assert curve.singular_values.shape == (len(ids), n_params) and (curve.ranks <= curve.bound).all()
    again = ProbeService(disp).status(PROBE, {"oversample": 2.0}, ids)
    assert again.state == "done" and again.key == done.key  # computed once, then read back


def test_the_stored_ranks_equal_a_direct_call_on_the_same_inputs(trained):
    st, disp, zoo_id, ckpts = trained
    ids = ckpts["checkpoint_id"].tolist()
    curve = FUNCTIONAL_DIMENSION_RESULT.from_stored(
        ProbeService(disp).compute_here(PROBE, {"oversample": 2.0}, ids).result)
    service = ProbeService(disp)
    spec = ProbeJobSpec(probe=PROBE, params={}, checkpoints=[service._ref(c) for c in ids], key="k")
    inputs = ProbeInputs(st.path, spec.checkpoints)
    last = inputs.load(len(ids) - 1)
    x = torch.randn(curve.n_inputs, 2, generator=torch.Generator().manual_seed(0))
    direct = functional_dimension(last.model, last.state, x)
    assert direct.rank == curve.ranks[-1]
    # Two float64 Jacobians of the same batch (the probe's vmap/chunked path vs a direct call) differ
    # by rounding only, |dJ|_2 <= sqrt(m n) eps |J|_2; Weyl's inequality moves each singular value by at
    # most that, which is below matrix_rank's own tolerance max(sv) max(J.shape) eps (and what it uses).
    np.testing.assert_allclose(direct.singular_values, curve.singular_values[-1], rtol=0, atol=direct.tolerance)


def test_the_ranks_land_in_the_runs_table(trained):
    st, disp, zoo_id, ckpts = trained
    ids = ckpts["checkpoint_id"].tolist()
    curve = FUNCTIONAL_DIMENSION_RESULT.from_stored(
        ProbeService(disp).compute_here(PROBE, {"oversample": 2.0}, ids).result)
    runs = st.runs_table(zoo_id)
    assert runs["probe_functional_dimension"].iloc[0] == curve.ranks[-1]  # at the highest step
    assert runs["probe_functional_dimension_bound"].iloc[0] == curve.bound


def test_data_inputs_come_from_the_runs_split(trained):
    st, disp, zoo_id, ckpts = trained
    last = ckpts["checkpoint_id"].iloc[-1]
    curve = FUNCTIONAL_DIMENSION_RESULT.from_stored(
        ProbeService(disp).compute_here(PROBE, {"inputs": "data", "oversample": 1.0}, [last]).result)
    assert curve.inputs == "data" and len(curve) == 1 and curve.n_inputs == math.ceil(curve.n_params / 2)


def test_bad_parameters_are_refused_before_queueing(trained):
    st, disp, zoo_id, ckpts = trained
    with pytest.raises(ValueError, match="oversample"):
        ProbeService(disp).key(PROBE, {"oversample": 0.0}, ckpts["checkpoint_id"].tolist()[:1])
    with pytest.raises(ValueError, match="inputs"):
        ProbeService(disp).key(PROBE, {"inputs": "uniform"}, ckpts["checkpoint_id"].tolist()[:1])
