"""RID probes through the job system: stored results rebuild the engine's ImportanceDistribution and
equal a direct engine call with the same seed; the ratio is the engine's Monte-Carlo ratio."""

import numpy as np
import pytest
import torch

from engine import data as zdata
from engine.jobs import ProbeService
from engine.jobs.builtin_probes.convert import unpack
from engine.jobs.builtin_probes.rashomon_rid import RidSampleParams
from engine.jobs.probe_job import CheckpointRef, ProbeInputs
from engine.probes.core import functional_module, resolve_data
from engine.probes.rashomon import (
    ImportanceDistribution,
    PopulationSets,
    RashomonRatio,
    rashomon_importance_distribution,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, trained_zoo):
    """Three small MLPs on 2-D moons (tabular inputs)."""
    sweep = {"name": "rid", "base": {"dataset": {"name": "moons"}, "arch": {"name": "mlp", "width": 4},
                                     "batch_size": 32, "steps": 40, "checkpoints": "linear:1"},
             "grid": {"seed": [0, 1, 2]}}
    with trained_zoo(tmp_path_factory.mktemp("rid"), sweep) as (st, disp, zoo_id):
        ckpts = st.list_checkpoints(zoo_id=zoo_id).sort_values(["run_id", "step"])
        yield st, disp, ckpts.groupby("run_id").tail(1)["checkpoint_id"].tolist()


def _compute(disp, probe, params, ids):
    done = ProbeService(disp).compute_here(probe, params, ids)
    assert done.state == "done", done
    return done.result


def test_population_rid_equals_the_engine_on_the_same_models(zoo):
    st, disp, ids = zoo
    params = {"n_bootstraps": 3, "n_repeats": 2, "epsilon": 0.5, "n_samples": 200, "ratio_samples": 2000}
    res = _compute(disp, "rashomon.rid_population", params, ids)
    rid = unpack(ImportanceDistribution, res.summary, res.arrays, "rid.")
    assert rid.feature_names == ("x0", "x1") and rid.n_bootstraps == 3
    assert rid.weights.sum() == pytest.approx(1.0)
    ratio = unpack(RashomonRatio, res.summary, res.arrays, "ratio.")
    assert ratio.kind == "monte_carlo" and ratio.n_samples == 2000 and 0 <= ratio.ratio <= 1
    # the same models, data and seed through the engine directly
    refs = []
    for c in ids:
        ck = st.get_checkpoint(c)
        run = st.get_run(ck["run_id"])
        refs.append(CheckpointRef(checkpoint_id=c, run_id=ck["run_id"], step=int(ck["step"]),
                                  artifact_sha=ck["artifact_sha"], config=run["config"]))
    inputs = ProbeInputs(st.path, refs, device=torch.device("cpu"))
    cks = [inputs.load(i) for i in range(len(inputs))]
    x, y = resolve_data(cks[0].dataset, "test", n_samples=200, seed=0)
    stacked = {k: torch.stack([c.state[k] for c in cks]) for k in cks[0].state}
    direct = rashomon_importance_distribution(
        (x, y), PopulationSets([(functional_module(cks[0].model, "running"), stacked)], epsilon=0.5, n_repeats=2),
        n_bootstraps=3, seed=0)
    np.testing.assert_allclose(rid.values, direct.values, atol=1e-6)
    np.testing.assert_allclose(rid.weights, direct.weights)


def test_sample_rid_on_chen_is_cached_and_says_which_features_matter(owner):
    st, disp = owner
    params = {"dataset": "rid_chen", "n_bootstraps": 2, "n_samples": 40, "n_repeats": 1, "fit_steps": 50,
              "ratio_samples": 500}
    res = _compute(disp, "rashomon.rid_sample", params, [])
    rid = unpack(ImportanceDistribution, res.summary, res.arrays, "rid.")
    assert rid.feature_names[:4] == ("X1", "X2", "X3", "X4")
    assert res.summary["n_rows"] == len(zdata.load("rid_chen").y_train)
    assert set(np.argsort(-rid.mean)[:3]) <= {0, 1, 2, 3}
    ratio = unpack(RashomonRatio, res.summary, res.arrays, "ratio.")
    assert ratio.n_samples == 500 and res.summary["ratio.half_width"] > 0
    again = ProbeService(disp).status("rashomon.rid_sample", params, [])
    assert again.state == "done"  # stored once, read back without another job
    np.testing.assert_array_equal(unpack(ImportanceDistribution, again.result.summary, again.result.arrays,
                                         "rid.").values, rid.values)


def test_trees_rid_on_binary_data(owner):
    st, disp = owner
    res = _compute(disp, "rashomon.rid_trees", {"dataset": "monk1", "n_bootstraps": 2, "n_repeats": 1,
                                                "regularization": 0.05, "depth_budget": 3}, [])
    rid = unpack(ImportanceDistribution, res.summary, res.arrays, "rid.")
    assert res.summary["binarized"] is False
    assert rid.values.shape[1] == len(zdata.load("monk1").feature_names)
    assert rid.metric == "rise in 0-1 error when permuted"


def test_params_are_validated_with_a_message():
    with pytest.raises(ValueError, match="n_bootstraps"):
        RidSampleParams(n_bootstraps=0)
    with pytest.raises(ValueError, match="extra"):
        RidSampleParams(bootstraps=3)
