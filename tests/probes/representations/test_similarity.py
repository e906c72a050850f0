"""Similarity measures: invariances, estimator agreement, known values, grids."""

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group

import engine.probes.representations.similarity as S
from engine.probes.representations import similarity_grid, similarity_over_training

RNG = np.random.default_rng(0)
X = RNG.normal(size=(80, 12))
Y = X @ RNG.normal(size=(12, 9)) + 0.5 * RNG.normal(size=(80, 9))
Q = ortho_group.rvs(12, random_state=1)
A_GENERAL = RNG.normal(size=(12, 12)) + 3 * np.eye(12)
CKAS = [S.linear_cka, S.debiased_cka, S.rbf_cka, lambda a, b: S.minibatch_cka([a[:40], a[40:]], [b[:40], b[40:]])]


# --- slow, obvious references (Kornblith et al.'s notebook, written with loops / explicit H)
def ref_center_gram(k, unbiased):
    k = k.copy()
    if not unbiased:
        h = np.eye(len(k)) - 1.0 / len(k)
        return h @ k @ h
    n = len(k)
    np.fill_diagonal(k, 0)
    means = k.sum(0) / (n - 2)
    means -= means.sum() / (2 * (n - 1))
    k -= means[:, None] + means[None, :]
    np.fill_diagonal(k, 0)
    return k


def ref_cka(kx, ky, unbiased=False):
    kx, ky = ref_center_gram(kx, unbiased), ref_center_gram(ky, unbiased)
    return (kx * ky).sum() / np.sqrt((kx * kx).sum() * (ky * ky).sum())


def ref_rbf(x, t=1.0):
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * t**2 * np.median(d2)))


def test_known_value_0_5576():
    np.random.seed(1337)
    x = np.random.randn(100, 10)
    y = np.random.randn(100, 10) + x
    assert S.linear_cka(x, y) == pytest.approx(0.5576, abs=1e-4)


@pytest.mark.parametrize("f", CKAS)
def test_cka_invariances(f):
    base = f(X, Y)
    assert f(X @ Q, Y) == pytest.approx(base, abs=1e-10)
    assert f(3.7 * X, 0.2 * Y) == pytest.approx(base, abs=1e-10)
    assert f(X + 5.0, Y - 2.0) == pytest.approx(base, abs=1e-10)
    assert abs(f(X @ A_GENERAL, Y) - base) > 1e-3
    assert f(X, X) == pytest.approx(1.0, abs=1e-12)


def test_feature_form_equals_gram_form():
    assert S.linear_cka(X, Y, form="feature") == pytest.approx(S.linear_cka(X, Y, form="gram"), abs=1e-13)
    wide = RNG.normal(size=(20, 300))
    feature, gram = S.linear_cka(wide, X[:20], form="feature"), S.linear_cka(wide, X[:20], form="gram")
    assert feature == pytest.approx(gram, abs=1e-12)


def test_against_kornblith_reference():
    assert S.linear_cka(X, Y) == pytest.approx(ref_cka(X @ X.T, Y @ Y.T), abs=1e-12)
    assert S.debiased_cka(X, Y) == pytest.approx(ref_cka(X @ X.T, Y @ Y.T, unbiased=True), abs=1e-12)
    wide = RNG.normal(size=(80, 400))  # d > n: the Gram form is used inside
    assert S.debiased_cka(wide, Y) == pytest.approx(ref_cka(wide @ wide.T, Y @ Y.T, unbiased=True), abs=1e-12)
    assert S.rbf_cka(X, Y, sigma=0.5) == pytest.approx(ref_cka(ref_rbf(X, 0.5), ref_rbf(Y, 0.5)), abs=1e-12)
    assert S.hsic_unbiased(torch.tensor(X @ X.T), torch.tensor(Y @ Y.T)) == pytest.approx(
        (ref_center_gram(X @ X.T, True) * ref_center_gram(Y @ Y.T, True)).sum() / (80 * 77), rel=1e-10)


def test_single_batch_minibatch_equals_debiased():
    assert S.minibatch_cka([X], [Y]) == pytest.approx(S.debiased_cka(X, Y), abs=1e-14)


def test_minibatch_accumulates_terms_before_ratio():
    bx, by = [X[:40], X[40:]], [Y[:40], Y[40:]]
    t = [[S._hsic1_terms(S.center(torch.tensor(p)), S.center(torch.tensor(q))) for p, q in pairs]
         for pairs in (zip(bx, by), zip(bx, bx), zip(by, by))]
    expect = np.mean(t[0]) / np.sqrt(np.mean(t[1]) * np.mean(t[2]))
    assert S.minibatch_cka(iter(bx), iter(by)) == pytest.approx(expect, abs=1e-14)


def test_unbiased_needs_four_samples():
    with pytest.raises(ValueError, match="needs at least 4 samples \\(rows\\); got 3"):
        S.debiased_cka(X[:3], Y[:3])
    with pytest.raises(ValueError, match="minibatch_cka \\(batch 1\\).*got 2"):
        S.minibatch_cka([X[:10], X[10:12]], [Y[:10], Y[10:12]])
    with pytest.raises(ValueError, match="same number of batches"):
        S.minibatch_cka([X[:10], X[10:20]], [Y[:10]])


def test_float32_input_is_accurate_where_naive_float32_cancels():
    g = torch.Generator().manual_seed(0)
    a = 50.0 + torch.randn(512, 64, generator=g)  # large mean: uncentred float32 Gram loses digits
    b = a @ torch.randn(64, 64, generator=g) + 30.0
    assert S.debiased_cka(a, b) == pytest.approx(S.debiased_cka(a.double(), b.double()), abs=1e-6)


def test_procrustes_zero_for_similarity_transform():
    z = 2.5 * X @ Q + 4.0
    assert S.procrustes_distance(X, z) == pytest.approx(0.0, abs=1e-6)
    assert S.procrustes_distance(X, z, angular=True) == pytest.approx(0.0, abs=1e-6)
    assert S.procrustes_distance(X, Y) > 0.1
    assert S.procrustes_distance(X, np.pad(X, ((0, 0), (0, 5)))) == pytest.approx(0.0, abs=1e-6)
    wide = RNG.normal(size=(30, 200))
    assert S.procrustes_distance(wide, wide @ ortho_group.rvs(200, random_state=2)) == pytest.approx(0.0, abs=1e-6)


def test_cca_family_invariant_to_invertible_maps():
    base = S.canonical_correlations(X, Y)
    np.testing.assert_allclose(S.canonical_correlations(X @ A_GENERAL + 1.0, Y), base, atol=1e-10)
    assert S.svcca(X @ A_GENERAL, 2 * Y, keep=None) == pytest.approx(S.svcca(X, Y, keep=None), abs=1e-10)
    perm = RNG.permutation(12)
    assert S.pwcca(3 * X[:, perm] + 1, Y) == pytest.approx(S.pwcca(X, Y), abs=1e-10)
    assert S.svcca(X, X) == pytest.approx(1.0) and S.pwcca(X, X) == pytest.approx(1.0)


def test_svcca_keep_truncates():
    assert S.orthonormal_basis(torch.tensor(X), 3)[0].shape == (80, 3)
    with pytest.raises(ValueError, match="keep must be a variance fraction"):
        S.svcca(X, Y, keep=1.5)


def test_rsa():
    assert S.rsa(X, X @ Q, metric="euclidean") == pytest.approx(1.0)
    assert S.rsa(X, Y) > S.rsa(X, RNG.normal(size=(80, 9)))
    with pytest.raises(ValueError, match="compare must be"):
        S.rsa(X, Y, compare="cosine")


def test_errors_are_clear():
    with pytest.raises(ValueError, match="same rows \\(samples\\); got 80 and 79"):
        S.linear_cka(X, Y[:79])
    with pytest.warns(RuntimeWarning, match="zero"):
        assert np.isnan(S.linear_cka(np.ones((10, 3)), X[:10]))


# --- grids -------------------------------------------------------------------------------
LAYERS_A = {f"a{i}": RNG.normal(size=(40, d)) for i, d in enumerate((3, 16, 50))}
LAYERS_B = {f"b{i}": v @ RNG.normal(size=(v.shape[1], 7)) for i, v in enumerate(LAYERS_A.values())}
PAIRWISE = {"linear_cka": S.linear_cka, "debiased_cka": S.debiased_cka, "rbf_cka": S.rbf_cka,
            "procrustes": S.procrustes_distance, "svcca": S.svcca, "pwcca": S.pwcca, "rsa": S.rsa}


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("metric", sorted(PAIRWISE))
def test_grid_equals_pairwise(metric):
    grid = similarity_grid(LAYERS_A, LAYERS_B, metric)
    ref = [[PAIRWISE[metric](a, b) for b in LAYERS_B.values()] for a in LAYERS_A.values()]
    np.testing.assert_allclose(grid.values, ref, atol=1e-10)
    assert grid.rows == ("a0", "a1", "a2") and grid.cols == ("b0", "b1", "b2")
    assert grid.larger_is_similar == (metric != "procrustes")


@pytest.mark.parametrize("metric", ["linear_cka", "debiased_cka"])
def test_grid_gram_path_equals_pairwise(metric):
    wide_a = [RNG.normal(size=(25, d)) for d in (200, 300)]  # d >> n: the Gram path is cheaper
    wide_b = [w[:, :150] @ RNG.normal(size=(150, 260)) for w in wide_a]
    grid = similarity_grid(wide_a, wide_b, metric)
    ref = [[PAIRWISE[metric](a, b) for b in wide_b] for a in wide_a]
    np.testing.assert_allclose(grid.values, ref, atol=1e-12)
    np.testing.assert_allclose(np.diag(similarity_grid(wide_a, None, metric).values), 1.0, atol=1e-12)


def test_grid_errors():
    with pytest.raises(ValueError, match="metric must be one of"):
        similarity_grid(LAYERS_A, LAYERS_B, "cosine")
    with pytest.raises(ValueError, match="same samples; got 40 and 39"):
        similarity_grid(LAYERS_A, [X[:39]])


def test_similarity_over_training_reference_column_is_one():
    ckpts = {str(s): {k: v + 0.1 * s * RNG.normal(size=v.shape) for k, v in LAYERS_A.items()} for s in (0, 5, 10)}
    grid = similarity_over_training(ckpts)
    assert grid.values.shape == (3, 3) and grid.cols == ("0", "5", "10") and grid.rows == tuple(LAYERS_A)
    np.testing.assert_allclose(grid.values[:, -1], 1.0)
    assert grid.values[0, 0] == pytest.approx(S.linear_cka(ckpts["0"]["a0"], ckpts["10"]["a0"]))


# --- Kornblith et al. 2019: CKA finds corresponding layers across seeds ---------------------
def _mnist1d():
    from mnist1d.data import get_dataset_args, make_dataset  # generated locally, no download

    d = make_dataset(get_dataset_args())
    return tuple(torch.tensor(d[k], dtype=torch.float32) for k in ("x", "x_test")) + tuple(
        torch.tensor(d[k]).long() for k in ("y", "y_test"))


def _mlp(seed):
    torch.manual_seed(seed)
    nn = torch.nn
    return nn.Sequential(nn.Linear(40, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(),
                         nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))


def _cnn(seed):
    torch.manual_seed(seed)
    nn = torch.nn
    return nn.Sequential(nn.Unflatten(1, (1, 40)), nn.Conv1d(1, 32, 3, padding=1), nn.ReLU(),
                         nn.Conv1d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Conv1d(32, 32, 3, stride=2, padding=1), nn.ReLU(),
                         nn.Flatten(), nn.Linear(32 * 10, 10))


def _train(model, x, y, seed, epochs):
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), 1e-3)
    for _ in range(epochs):
        for idx in torch.randperm(len(x), generator=g).split(128):
            loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model


def test_kornblith_cka_identifies_corresponding_layers_across_seeds():
    from engine.probes.representations import capture_activations

    x, x_test, y, y_test = _mnist1d()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small models: threads only add overhead on a shared machine
    try:
        with torch.random.fork_rng():  # the model factories seed torch's global RNG
            for make, epochs, pool in ((_mlp, 8, "mean"), (_cnn, 5, "flatten")):
                models = [_train(make(seed), x, y, seed, epochs) for seed in (0, 1)]
                acts = [capture_activations(m, dict(m.named_parameters()), (x_test, y_test), pool=pool)
                        for m in models]
                grid = similarity_grid(acts[0], acts[1], "linear_cka")
                hit = np.mean(grid.best_match() == np.arange(len(grid.rows)))
                assert len(grid.rows) >= 4 and hit >= 0.9, (make.__name__, grid.values.round(2))
    finally:
        torch.set_num_threads(threads)
