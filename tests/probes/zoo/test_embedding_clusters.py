"""Classical MDS recovers a Euclidean configuration; clusters cut where a hand-made matrix says."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from engine.probes import ZooDistances, classical_mds, cluster_models, embed_models


def _procrustes_residual(a, b):
    a, b = a - a.mean(0), b - b.mean(0)
    u, _, vt = np.linalg.svd(a.T @ b)
    return np.abs(a @ (u @ vt) - b).max()


def test_classical_mds_recovers_a_planar_configuration_up_to_rotation():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(9, 2)) * [3.0, 1.0]
    d = cdist(points, points)
    emb = embed_models(ZooDistances(tuple("abcdefghi"), d, "test"), "mds")
    assert emb.coords.shape == (9, 2) and emb.labels == tuple("abcdefghi")
    assert _procrustes_residual(emb.coords, points) < 1e-9
    np.testing.assert_allclose(cdist(emb.coords, emb.coords), d, atol=1e-9)
    assert emb.explained == pytest.approx(1.0)
    again = embed_models(d, "mds")
    np.testing.assert_array_equal(again.coords, emb.coords)  # deterministic, signs fixed


def test_mds_of_higher_dimensional_points_reports_what_it_keeps():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(12, 5))
    coords, explained = classical_mds(cdist(points, points), dim=2)
    assert coords.shape == (12, 2) and 0 < explained < 1


def test_embedding_errors():
    d = np.array([[0, 1, np.nan], [1, 0, 1], [np.nan, 1, 0]])
    with pytest.raises(ValueError, match="1 missing pairs"):
        embed_models(d)
    with pytest.raises(ValueError, match="method must be one of mds, umap"):
        embed_models(np.zeros((3, 3)), "tsne")
    with pytest.raises(ValueError, match="at least 4 models"):
        embed_models(np.ones((3, 3)) - np.eye(3), "umap")


def _blocks():
    # two tight groups {0,1,2} and {3,4}, with a chain 2-3 at 0.5 and everything else at 1
    d = np.ones((5, 5))
    for i, j in [(0, 1), (1, 2), (0, 2), (3, 4)]:
        d[i, j] = d[j, i] = 0.1
    d[2, 3] = d[3, 2] = 0.5
    np.fill_diagonal(d, 0)
    return d


def test_threshold_cuts_single_linkage_into_chains():
    d = _blocks()
    assert cluster_models(d, threshold=0.2, method="single").clusters.tolist() == [1, 1, 1, 2, 2]
    assert cluster_models(d, threshold=0.5, method="single").clusters.tolist() == [1, 1, 1, 1, 1]  # chain 2-3
    assert cluster_models(d, threshold=0.05, method="single").n_clusters == 5


def test_average_linkage_does_not_chain():
    d = _blocks()
    c = cluster_models(d, threshold=0.5, method="average")
    assert c.clusters.tolist() == [1, 1, 1, 2, 2]
    assert c.members(2) == ("model 3", "model 4")
    assert sorted(c.order.tolist()) == list(range(5))


def test_negative_barriers_count_as_zero_and_errors():
    d = np.array([[0, -0.01, 1], [-0.01, 0, 1], [1, 1, 0]])
    assert cluster_models(d, threshold=0.0, method="single").clusters.tolist() == [1, 1, 2]
    with pytest.raises(ValueError, match="method must be one of single, average"):
        cluster_models(d, threshold=0.1, method="ward")
    with pytest.raises(ValueError, match="missing pairs"):
        cluster_models(np.full((2, 2), np.nan), threshold=0.1)
