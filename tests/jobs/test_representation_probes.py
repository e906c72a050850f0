"""Representation probes through the job code path: stored activations feed the inline measures."""

import numpy as np
import pytest

from engine.jobs import ProbeService
from engine.jobs.builtin_probes.convert import unpack
from engine.jobs.builtin_probes.representations import split_activations
from engine.probes.representations import AlignedProjection, linear_cka, similarity_grid


@pytest.fixture(scope="module")
def trained(tmp_path_factory, trained_zoo):
    sweep = {"name": "rep", "base": {"dataset": {"name": "gaussians"}, "arch": {"name": "mlp", "width": 16},
                                     "batch_size": 32, "steps": 40, "checkpoints": "linear:3"},
             "grid": {"seed": [0, 1]}}
    with trained_zoo(tmp_path_factory.mktemp("rep"), sweep) as (st, disp, zoo_id):
        yield st, disp, st.list_checkpoints(zoo_id=zoo_id).sort_values(["run_id", "step"])


def _compute(disp, probe, params, ids):
    """The probe job's code path in this process (no worker start), stored and read back."""
    done = ProbeService(disp).compute_here(probe, params, ids)
    assert done.state == "done", done
    return done.result


def test_activations_are_stored_per_checkpoint_on_the_same_rows(trained):
    st, disp, ckpts = trained
    last = ckpts.groupby("run_id")["checkpoint_id"].last().tolist()
    res = _compute(disp, "representations.activations", {"max_samples": 100}, last)
    a, b = split_activations(res.summary, res.arrays)
    assert list(a) == res.summary["layers"] and all(a[k].shape[0] == 100 for k in a)
    grid = similarity_grid(a, b, "linear_cka")
    assert grid.values[0, 0] == pytest.approx(linear_cka(a[res.summary["layers"][0]], b[res.summary["layers"][0]]))
    same = similarity_grid(a, a, "linear_cka")
    assert np.allclose(np.diag(same.values), 1.0)


def test_projection_probe_rebuilds_an_aligned_projection(trained):
    st, disp, ckpts = trained
    run = ckpts[ckpts["run_id"] == ckpts["run_id"].iloc[0]]["checkpoint_id"].tolist()
    acts = _compute(disp, "representations.activations", {"max_samples": 50}, run)
    layer = acts.summary["layers"][0]
    res = _compute(disp, "representations.projection", {"layer": layer, "method": "pca", "max_samples": 50}, run)
    proj = unpack(AlignedProjection, res.summary, res.arrays)
    assert proj.coords.shape == (len(run), 50, 2) and proj.method == "pca"
    with pytest.raises(ValueError, match="layer 'nope' is not one of the model's layers"):
        _compute(disp, "representations.projection", {"layer": "nope", "method": "pca"}, run)
