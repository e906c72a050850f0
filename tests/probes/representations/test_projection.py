"""Projections: seeded, stratified subsample with the cap reported, aligned frames."""

import numpy as np
import pytest
from scipy.stats import ortho_group

from engine.probes.representations import aligned_projection, project, stratified_indices, warm_umap

RNG = np.random.default_rng(0)
LABELS = np.repeat(np.arange(4), [400, 300, 200, 100])
FEATS = RNG.normal(size=(1000, 12)) + 4.0 * RNG.normal(size=(4, 12))[LABELS]


def test_stratified_subsample_keeps_class_proportions_and_reports_cap():
    idx = stratified_indices(1000, 100, LABELS, seed=1)
    assert len(idx) == 100 and np.all(np.diff(idx) > 0)
    assert list(np.bincount(LABELS[idx])) == [40, 30, 20, 10]
    assert np.array_equal(idx, stratified_indices(1000, 100, LABELS, seed=1))
    rare = np.r_[np.zeros(999, int), 1]
    assert 1 in rare[stratified_indices(1000, 10, rare)]
    with pytest.raises(ValueError, match="max_points must be a positive integer"):
        stratified_indices(10, 0)


def test_pca_projection_is_seeded_and_capped():
    a = project(FEATS, "pca", labels=LABELS, max_points=200, seed=3)
    b = project(FEATS, "pca", labels=LABELS, max_points=200, seed=3)
    assert a.coords.shape == (200, 2) and a.subsampled and a.cap == 200 and a.n_total == 1000
    np.testing.assert_array_equal(a.coords, b.coords)
    full = project(FEATS, "pca", max_points=None)
    assert not full.subsampled and full.coords.shape == (1000, 2)
    assert full.coords[:, 0].var() >= full.coords[:, 1].var()


def test_tsne_projection_runs_seeded():
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):  # OpenMP threads spin badly on a shared 2-core machine
        a = project(FEATS[:60], "tsne", seed=0, max_iter=250)
        b = project(FEATS[:60], "tsne", seed=0, max_iter=250)
    np.testing.assert_allclose(a.coords, b.coords)


def test_bad_method_is_a_clear_error():
    with pytest.raises(ValueError, match="method must be one of"):
        project(FEATS, "isomap")
    with pytest.raises(ValueError, match="aligned_projection method must be 'umap' or 'pca'"):
        aligned_projection([FEATS], "tsne")
    with pytest.raises(ValueError, match="same rows"):
        aligned_projection([FEATS, FEATS[:10]], "pca")


def test_aligned_pca_undoes_rotations_between_checkpoints():
    q = ortho_group.rvs(12, random_state=0)
    frames = aligned_projection([FEATS, FEATS @ q, -FEATS], "pca", max_points=300, labels=LABELS,
                                checkpoint_labels=["s0", "s1", "s2"])
    assert frames.coords.shape == (3, 300, 2) and frames.labels == ("s0", "s1", "s2")
    np.testing.assert_allclose(frames.coords[1], frames.coords[0], atol=1e-3)
    np.testing.assert_allclose(frames.coords[2], frames.coords[0], atol=1e-3)


@pytest.mark.slow
def test_umap_and_aligned_umap(tmp_path):
    a = project(FEATS, "umap", seed=0, max_points=300, labels=LABELS)
    b = project(FEATS, "umap", seed=0, max_points=300, labels=LABELS)
    np.testing.assert_allclose(a.coords, b.coords)
    frames = aligned_projection([FEATS, FEATS + 0.01], "umap", max_points=200, labels=LABELS, n_epochs=50)
    assert frames.coords.shape == (2, 200, 2) and np.isfinite(frames.coords).all()
    with pytest.warns(RuntimeWarning, match="umap is already imported"):
        assert warm_umap(n_samples=300, cache_dir=tmp_path) > 0


def test_pca_matches_svd_reference_for_tall_and_wide_inputs():
    for x in (FEATS, FEATS[:8]):  # d <= n uses the covariance, d > n the Gram matrix
        xc = x - x.mean(0)
        u, s, vt = np.linalg.svd(xc, full_matrices=False)
        got = project(x, "pca", max_points=None).coords
        np.testing.assert_allclose(np.abs(got), np.abs(u[:, :2] * s[:2]), rtol=1e-4, atol=1e-4)
