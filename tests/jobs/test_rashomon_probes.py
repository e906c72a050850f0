"""The Rashomon probes through the job system: stored results rebuild the engine's dataclasses, and the
ε slider's inline membership on stored losses agrees with the engine."""

import numpy as np
import pytest
import torch

from engine.jobs import ProbeService
from engine.jobs.builtin_probes.rashomon import PopulationResult, SampleResult, TreesResult
from engine.probes.rashomon import (
    ImportanceCloud,
    InteractionCloud,
    RashomonSample,
    TreeRashomonSet,
    flat_losses,
    model_class,
    predict_trees,
    predictive_multiplicity,
    rashomon_set,
)

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, trained_zoo):
    """Four small MLPs on 2-D moons (tabular inputs, so the importance clouds are computed)."""
    sweep = {"name": "rs", "base": {"dataset": {"name": "moons"}, "arch": {"name": "mlp", "width": 8},
                                    "batch_size": 32, "steps": 40, "checkpoints": "linear:2"},
             "grid": {"lr": [0.05, 0.3], "seed": [0, 1]}}
    with trained_zoo(tmp_path_factory.mktemp("rs"), sweep) as (st, disp, zoo_id):
        ckpts = st.list_checkpoints(zoo_id=zoo_id).sort_values(["run_id", "step"])
        yield st, disp, ckpts.groupby("run_id").tail(1)["checkpoint_id"].tolist()


def _done(disp, probe, params, ids):
    """The probe job's code path in this process (no worker start), stored; its status read back."""
    done = ProbeService(disp).compute_here(probe, params, ids)
    assert done.state == "done", done
    return done


def _compute(disp, probe, params, ids):
    """The stored result (summary and arrays, as on disk)."""
    return _done(disp, probe, params, ids).result


# -- a population of stored checkpoints -------------------------------------------------------------------

def test_population_losses_match_evaluate_and_membership_matches_rashomon_set(zoo):
    st, disp, ids = zoo
    res = _compute(disp, "rashomon.population", {"n_samples": None}, ids)
    evaluated = _compute(disp, "evaluate", {"split": "test"}, ids)
    np.testing.assert_allclose(res.arrays["loss"], evaluated.arrays["loss"], rtol=1e-4)
    np.testing.assert_allclose(1 - res.arrays["error"], evaluated.arrays["accuracy"], atol=1e-6)
    probs, y = res.arrays["probs"], res.arrays["y"]
    assert probs.shape == (4, len(y), 2)
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-5)
    np.testing.assert_allclose(res.arrays["error"], (probs.argmax(-1) != y).mean(1), atol=1e-12)
    losses = res.arrays["loss"]
    sizes = []
    # up to the ratio of the largest loss to the smallest, plus 4 ulps: min * (1 + eps) is rounded twice
    # (the ratio, then the product), so at exactly max / min - 1 the largest loss can fall just outside
    for eps in np.linspace(0, losses.max() / losses.min() * (1 + 4 * np.finfo(float).eps) - 1, 7):
        rs = rashomon_set(losses, epsilon=eps, mode="relative")
        assert rs.size == int(np.sum(losses <= losses.min() * (1 + eps)))  # the count the page shows
        sizes.append(rs.size)
    assert sizes == sorted(sizes) and sizes[0] >= 1 and sizes[-1] == 4
    assert res.summary["labels"] and len(res.summary["labels"]) == 4


def test_population_clouds_rebuild_and_describe_every_model(zoo):
    st, disp, ids = zoo
    done = _done(disp, "rashomon.population", {"n_samples": 200, "n_repeats": 2}, ids)
    res, typed = done.result, done.typed()
    assert isinstance(typed, PopulationResult) and typed.labels == tuple(res.summary["labels"])
    assert res.summary["source"] == "population" and "vic.mean" in res.arrays and "fis.pairs" in res.arrays
    vic, fis = typed.importance, typed.interactions
    assert isinstance(vic, ImportanceCloud) and isinstance(fis, InteractionCloud)
    np.testing.assert_array_equal(typed.preds, res.arrays["probs"].argmax(-1))
    assert vic.mean.shape == (4, 2) and vic.importances.shape == (4, 2, 2)
    assert vic.feature_names == tuple(res.summary["feature_names"]) and vic.metric == "loss"
    np.testing.assert_array_equal(vic.mcr_min, vic.mean.min(0))
    np.testing.assert_allclose(vic.baseline, res.arrays["loss"][:], rtol=1e-4)  # same 200 samples, same loss
    assert fis.pairs.tolist() == [[0, 1]] and fis.fis.shape == (4, 1)
    np.testing.assert_allclose(fis.single, vic.mean, atol=1e-9)  # the same permutations
    assert fis.pair_labels() == [" × ".join(res.summary["feature_names"])]


def test_population_needs_two_checkpoints(zoo):
    st, disp, ids = zoo
    with pytest.raises(ValueError, match=r"takes 2 to any number of checkpoints; got 1"):
        ProbeService(disp).key("rashomon.population", {}, ids[:1])


# -- a sampled model class (no checkpoints) -----------------------------------------------------------------

SAMPLE = {"dataset": "monk1", "n_samples": 200, "epsilon": 0.1, "n_repeats": 2, "fis_features": 3}


def test_sampled_members_are_exact_and_the_sample_rebuilds(zoo):
    from engine import data as zdata

    st, disp, _ = zoo
    done = _done(disp, "rashomon.sample", SAMPLE, [])
    res, typed = done.result, done.typed()
    assert isinstance(typed, SampleResult) and isinstance(typed.sample, RashomonSample)
    assert res.summary["sample.threshold"] == typed.sample.threshold  # the keys on disk
    sample = typed.sample
    objective = res.arrays["objective"]
    assert objective[0] == pytest.approx(sample.optimum_loss) and len(objective) == len(sample.thetas) + 1
    assert np.all(objective <= sample.threshold + 1e-12)
    assert sample.threshold == pytest.approx(sample.optimum_loss * 1.1)
    ds = zdata.load("monk1")
    model = model_class("logistic", 11, 2)
    train = (ds.x_train.double(), ds.y_train)
    again = flat_losses(model, torch.as_tensor(sample.thetas), sample.names, sample.shapes, train, l2=1e-3).numpy()
    np.testing.assert_allclose(again, objective[1:], rtol=1e-10)  # members recomputed from stored parameters
    assert sample.stacked_params()["weight"].shape == (len(sample.thetas), 2, 11)
    probs = res.arrays["probs"]
    assert probs.shape == (len(objective), len(ds.y_test), 2)
    pm = predictive_multiplicity(probs, probs[0].argmax(-1))
    assert 0 <= pm.discrepancy <= pm.ambiguity <= 1
    vic = typed.importance
    assert vic.mean.shape == (len(objective), 11) and len(res.arrays["fis.pairs"]) == 3


def test_probes_without_checkpoints_are_keyed_by_dataset_and_params(zoo):
    st, disp, ids = zoo
    service = ProbeService(disp)
    a, _ = service.key("rashomon.sample", SAMPLE, [])
    assert a == service.key("rashomon.sample", dict(reversed(list(SAMPLE.items()))), [])[0]
    assert a != service.key("rashomon.sample", {**SAMPLE, "dataset": "monk2"}, [])[0]
    with pytest.raises(ValueError, match=r"takes 0 checkpoints; got 1"):
        service.key("rashomon.trees", {}, ids[:1])
    with pytest.raises(ValueError, match=r"unknown dataset 'nope'"):
        service.key("rashomon.sample", {"dataset": "nope"}, [])


def test_sampling_refuses_inputs_that_are_not_tabular(zoo):
    from engine.jobs.builtin_probes.rashomon import SampleParams, TreesParams, run_sample, run_trees

    with pytest.raises(ValueError, match=r"tabular classification data set .* inputs \(1, 8, 8\)"):
        run_sample(None, SampleParams(dataset="digits"), lambda f, m: None)
    with pytest.raises(ValueError, match=r"sparse trees need 0/1 features; 'wine' has others"):
        run_trees(None, TreesParams(dataset="wine"), lambda f, m: None)


# -- sparse trees (no checkpoints) --------------------------------------------------------------------------

def test_tree_set_rebuilds_and_its_stored_predictions_are_the_trees(zoo):
    pytest.importorskip("treefarms")
    from engine import data as zdata

    st, disp, _ = zoo
    done = _done(disp, "rashomon.trees", {"dataset": "monk1", "regularization": 0.05,
                                          "rashomon_multiplier": 0.05, "depth_budget": 3}, [])
    res, typed = done.result, done.typed()
    assert isinstance(typed, TreesResult) and isinstance(typed.trees, TreeRashomonSet)
    assert typed.probs is None and typed.importance is None and typed.preds is typed.pred
    trees = typed.trees
    assert trees.size == res.summary["n_models"] > 0 and trees.depth_budget == 3
    assert np.all(trees.objective <= trees.bound * (1 + 1e-9)) and np.all(np.diff(trees.objective) >= 0)
    assert trees.feature_names == tuple(zdata.load("monk1").feature_names)
    x, y = res.arrays["x"], res.arrays["y"]
    np.testing.assert_array_equal(res.arrays["pred"], predict_trees(trees, x))
    np.testing.assert_allclose(res.arrays["eval_accuracy"], (predict_trees(trees, x) == y).mean(1))
    rs = rashomon_set(trees.objective, epsilon=trees.rashomon_multiplier, mode="relative")
    assert rs.size == trees.size  # the page's slider at the multiplier shows the whole set
