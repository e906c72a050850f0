"""Distance of a trajectory from its plane: zero for a planar path, exact for a known off-plane part."""

import numpy as np
import pytest
import torch

from engine.probes.landscape import TrajectoryPlane, pca_directions, trajectory_plane


def _unit(gen, shape):
    v = torch.randn(shape, generator=gen, dtype=torch.float64)
    return v / v.norm()


def _orthonormal(n, gen, p=(6, 5)):
    q, _ = torch.linalg.qr(torch.randn(int(np.prod(p)), n, generator=gen, dtype=torch.float64))
    return [q[:, i].reshape(p) for i in range(n)]


def _path(coords, e, centre, extra=None):
    """checkpoints centre + a e1 + b e2 (+ c e3), as parameter dicts {"w": (6, 5)}."""
    out = []
    for t, (a, b) in enumerate(coords):
        w = centre + a * e[0] + b * e[1] + (0.0 if extra is None else extra[t] * e[2])
        out.append({"w": w})
    return out


def test_a_planar_trajectory_is_at_distance_zero_and_fully_explained():
    gen = torch.Generator().manual_seed(0)
    e = _orthonormal(2, gen)
    centre = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    coords = np.random.default_rng(0).normal(size=(7, 2))
    coords[-1] = 0.0  # the last checkpoint is the centre
    ckpts = _path(coords, e, centre)
    plane = trajectory_plane(ckpts, {"w": e[0]}, {"w": e[1]})
    assert isinstance(plane, TrajectoryPlane) and plane.origin == 6
    np.testing.assert_allclose(plane.coords, coords, atol=1e-12)
    np.testing.assert_allclose(plane.off_plane, 0.0, atol=1e-12)
    assert plane.explained == pytest.approx(1.0, abs=1e-12)
    # PCA finds that plane (up to rotation within it): the same zero distances, 100% explained
    pca = pca_directions(ckpts, ignore=None)
    via_pca = trajectory_plane(ckpts, pca.d1, pca.d2)
    np.testing.assert_allclose(via_pca.off_plane, 0.0, atol=1e-12)
    np.testing.assert_allclose(via_pca.coords, pca.coords, atol=1e-12)
    assert float(pca.explained_variance_ratio.sum()) == pytest.approx(1.0, abs=1e-12)


def test_a_known_off_plane_component_is_recovered_exactly():
    gen = torch.Generator().manual_seed(1)
    e = _orthonormal(3, gen)
    centre = torch.randn(6, 5, generator=gen, dtype=torch.float64)
    coords = np.random.default_rng(1).normal(size=(6, 2))
    coords[-1] = 0.0
    extra = np.array([0.3, -0.2, 0.0, 0.5, 0.1, 0.0])
    plane = trajectory_plane(_path(coords, e, centre, extra), {"w": 2.0 * e[0]}, {"w": e[1] + e[0]})
    np.testing.assert_allclose(plane.off_plane, np.abs(extra), atol=1e-12)
    norms = np.sqrt((coords**2).sum(1) + extra**2)
    np.testing.assert_allclose(plane.distance, norms, atol=1e-12)
    np.testing.assert_allclose(plane.off_plane_share, np.divide(np.abs(extra), norms, out=np.zeros(6),
                                                                where=norms > 0), atol=1e-12)
    # least squares in the (non-orthonormal) d1, d2: a e1 + b e2 = (a - b)/2 d1 + b d2
    np.testing.assert_allclose(plane.coords, np.stack([(coords[:, 0] - coords[:, 1]) / 2, coords[:, 1]], 1),
                               atol=1e-12)
    # explained share: the variance along e1, e2 over the total (all rows, centred)
    allc = np.concatenate([coords, extra[:, None]], 1)
    allc = allc - allc.mean(0)
    assert plane.explained == pytest.approx((allc[:, :2] ** 2).sum() / (allc**2).sum(), rel=1e-12)


def test_parameters_the_directions_leave_out_count_as_off_the_plane():
    gen = torch.Generator().manual_seed(2)
    e = _orthonormal(2, gen)
    ckpts = [{"w": a * e[0] + b * e[1], "bias": torch.full((5,), c, dtype=torch.float64)}
             for a, b, c in [(1.0, 0.0, 0.3), (0.0, 1.0, -0.1), (-0.5, 0.3, 0.2), (0.0, 0.0, 0.0)]]
    pca = pca_directions(ckpts)  # ignore="biasbn": the bias is not in the plane
    plane = trajectory_plane(ckpts, pca.d1, pca.d2)
    np.testing.assert_allclose(plane.off_plane, np.sqrt(5) * np.abs([0.3, -0.1, 0.2, 0.0]), atol=1e-12)


def test_errors_name_the_bad_value():
    w = {"w": torch.ones(3, dtype=torch.float64)}
    with pytest.raises(ValueError, match="needs at least one checkpoint; got 0"):
        trajectory_plane([], w, w)
    with pytest.raises(ValueError, match="d1 and d2 are parallel"):
        trajectory_plane([w, w], w, {"w": 2 * w["w"]})
    with pytest.raises(ValueError, match=r"checkpoint 1 has parameters \['v', 'w'\]"):
        trajectory_plane([w, {"v": w["w"]}], w, w)
