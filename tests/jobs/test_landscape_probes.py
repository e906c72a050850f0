"""The landscape probes through the job system: stored results rebuild the engine's dataclasses."""

import numpy as np
import pytest
import torch

from engine.jobs import ProbeService, probe_job
from engine.jobs.builtin_probes.landscape import SpectrumResult
from engine.probes.landscape import HessianEigs, PerLayerHessian, Sharpness, Surface


@pytest.fixture(scope="module")
def trained(tmp_path_factory, trained_zoo):
    sweep = {"name": "ls", "base": {"dataset": {"name": "moons"}, "arch": {"name": "mlp", "width": 8},
                                    "batch_size": 32, "steps": 40, "checkpoints": "linear:4"}}
    with trained_zoo(tmp_path_factory.mktemp("ls"), sweep) as (st, disp, zoo_id):
        yield st, disp, st.list_checkpoints(zoo_id=zoo_id).sort_values("step")


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


def test_surface_probe_centre_is_the_checkpoint_loss(trained):
    st, disp, ckpts = trained
    last = ckpts["checkpoint_id"].iloc[-1]
    surface = _typed(disp, "landscape.surface", {"resolution": 5, "n_samples": None}, [last])
    assert isinstance(surface, Surface)
    assert surface.loss.shape == (5, 5) and surface.bn == "running"
    assert surface.loss[2, 2] == pytest.approx(surface.center_loss, rel=1e-5)
    evaluated = _compute(disp, "evaluate", {"split": "train"}, [last])
    assert surface.center_loss == pytest.approx(evaluated.summary["loss"][0], rel=1e-5)


def test_a_checkpoint_loads_in_the_models_order_so_a_seed_gives_one_direction(trained, monkeypatch):
    """Seeded draws follow the parameter order: the stored file's order (safetensors' hash map, another at each
    read) must not reach them, or seed 0 is another random direction in another process."""
    from engine.probes.landscape import random_direction

    st, disp, ckpts = trained
    refs = probe_job.ProbeJobSpec(probe="landscape.surface", params={}, key="k",
                                  checkpoints=[ProbeService(disp)._ref(ckpts["checkpoint_id"].iloc[-1])]).checkpoints
    plain = probe_job.ProbeInputs(st.path, refs).load(0)
    real = probe_job.store.get_tensors_at
    monkeypatch.setattr(probe_job.store, "get_tensors_at", lambda path, sha: dict(reversed(real(path, sha).items())))
    shuffled = probe_job.ProbeInputs(st.path, refs).load(0)
    assert list(shuffled.params) == list(plain.params) == [n for n, _ in plain.model.named_parameters()]
    a, b = random_direction(plain.params, seed=0), random_direction(shuffled.params, seed=0)
    assert all(torch.equal(a.params[n], b.params[n]) for n in plain.params)


def test_pca_surface_carries_the_trajectory(trained):
    st, disp, ckpts = trained
    surface = _typed(disp, "landscape.surface", {"directions": "pca", "resolution": 5}, ckpts["checkpoint_id"].tolist())
    assert surface.trajectory.shape == (len(ckpts), 2)
    assert np.allclose(surface.trajectory[-1], 0.0, atol=1e-6)  # centred on the last checkpoint
    # each checkpoint's distance off the plane: 0 at the centre, never more than its distance from it
    assert surface.off_plane.shape == surface.trajectory_distance.shape == (len(ckpts),)
    # both are float64 norms over the same P parameters: each within P * eps64 relative (summation bound)
    slack = 2 * 10**6 * np.finfo(np.float64).eps  # P < 10^6 for this MLP
    assert surface.off_plane[-1] == 0.0 and np.all(surface.off_plane <= surface.trajectory_distance * (1 + slack))
    in_plane = np.sqrt(np.maximum(surface.trajectory_distance**2 - surface.off_plane**2, 0))
    np.testing.assert_allclose(in_plane, np.linalg.norm(surface.trajectory, axis=1), rtol=1e-4, atol=1e-6)
    assert 0.0 < surface.plane_explained <= 1.0


def test_random_direction_surfaces_have_no_plane_distances(trained):
    st, disp, ckpts = trained
    last = ckpts["checkpoint_id"].tolist()[-1:]
    surface = _typed(disp, "landscape.surface", {"resolution": 3, "n_samples": 50}, last)
    assert surface.off_plane is None and surface.plane_explained is None


def test_per_layer_probe_over_the_run_beside_two_over_lr(trained):
    st, disp, ckpts = trained
    ids = ckpts["checkpoint_id"].tolist()
    res = _typed(disp, "curvature.per_layer", {"n_samples": 100, "n_probes": 4, "max_iter": 8}, ids)
    assert isinstance(res, PerLayerHessian)
    assert res.blocks == ("layers.0.linear", "layers.1.linear", "head") and res.level == "layer"
    assert res.top.shape == res.trace.shape == res.converged.shape == (len(ids), 3)
    assert res.converged.dtype == bool and list(res.steps) == ckpts["step"].tolist()
    np.testing.assert_allclose(res.threshold, 2.0 / res.lr)
    assert np.all(res.lr > 0)


def test_spectrum_and_sharpness_probes(trained):
    st, disp, ckpts = trained
    ids = ckpts["checkpoint_id"].tolist()
    done = _done(disp, "curvature.spectrum", {"k": 2, "n_samples": 200, "n_probes": 8, "n_iter": 8, "n_runs": 1},
                 ids[-1:])
    spec = done.typed()
    assert isinstance(spec, SpectrumResult) and isinstance(spec.top, HessianEigs)
    assert {k.split(".")[0] for k in done.result.arrays} == {"top", "trace", "density"}  # the keys on disk
    assert "top.eigenvectors" not in done.result.arrays and spec.top.eigenvectors.size == 0
    assert spec.trace.n_probes == 8 and len(spec.density.grid) > 0
    top = spec.top
    assert len(top.eigenvalues) == 2 and top.eigenvalues[0] >= top.eigenvalues[1]
    sharp = _typed(disp, "curvature.sharpness", {"n_samples": 200}, ids)
    assert isinstance(sharp, Sharpness)
    assert list(sharp.steps) == ckpts["step"].tolist()
    assert sharp.eigenvalues[-1].max() == pytest.approx(top.eigenvalues.max(), rel=0.05)
