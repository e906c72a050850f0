"""The generic transforms: seeded split, train_fraction, label_noise, stratification."""

import numpy as np
import pytest
import torch

from engine.config import DatasetSpec
from engine.data import DatasetError, load
from engine.data.transforms import flip_labels, split_indices, subsample_indices


def _same(a, b):
    return all(torch.equal(getattr(a, f), getattr(b, f)) for f in ("x_train", "y_train", "x_test", "y_test"))


@pytest.mark.parametrize("name", ["moons", "spirals", "gaussians", "teacher", "modular", "wine", "compas", "digits"])
def test_same_seed_same_tensors_different_seed_different(name):
    spec = DatasetSpec(name=name, seed=3, train_fraction=0.5)
    assert _same(load(spec), load(spec))
    other = load(spec.model_copy(update={"seed": 4}))
    assert not torch.equal(load(spec).x_train, other.x_train)


def test_mnist1d_seed_changes_generation():
    a = load(DatasetSpec(name="mnist1d", seed=0, options={"n_samples": 200}))
    b = load(DatasetSpec(name="mnist1d", seed=0, options={"n_samples": 200}))
    c = load(DatasetSpec(name="mnist1d", seed=1, options={"n_samples": 200}))
    assert _same(a, b) and (a.n_train, a.n_test) == (160, 40)
    assert not torch.equal(a.x_train, c.x_train)


def test_loading_leaves_global_rngs_alone():
    np.random.seed(123)
    torch.manual_seed(123)
    expected_np, expected_torch = np.random.rand(), torch.rand(1)
    np.random.seed(123)
    torch.manual_seed(123)
    load(DatasetSpec(name="mnist1d", seed=5, options={"n_samples": 100}))
    load(DatasetSpec(name="moons", label_noise=0.2))
    assert np.random.rand() == expected_np and torch.equal(torch.rand(1), expected_torch)


@pytest.mark.parametrize("fraction", [0.1, 0.33, 0.5, 1.0])
def test_train_fraction_exact_count_and_test_untouched(fraction):
    full = load(DatasetSpec(name="moons", seed=2))
    part = load(DatasetSpec(name="moons", seed=2, train_fraction=fraction))
    assert part.n_train == round(fraction * full.n_train)
    assert _rows(part.x_train) <= _rows(full.x_train)
    assert torch.equal(part.x_test, full.x_test)


def test_train_fraction_subsets_are_nested():
    small = load(DatasetSpec(name="gaussians", train_fraction=0.2))
    large = load(DatasetSpec(name="gaussians", train_fraction=0.6))
    assert _rows(small.x_train) <= _rows(large.x_train)


def _rows(x):
    return {tuple(r) for r in x.tolist()}


@pytest.mark.parametrize("noise", [0.1, 0.25, 0.5])
def test_label_noise_flips_exact_count_to_other_classes(noise):
    clean = load(DatasetSpec(name="spirals", seed=1, train_fraction=0.8))
    noisy = load(DatasetSpec(name="spirals", seed=1, train_fraction=0.8, label_noise=noise))
    assert torch.equal(clean.x_train, noisy.x_train) and torch.equal(clean.y_test, noisy.y_test)
    changed = (clean.y_train != noisy.y_train).sum().item()
    assert changed == round(noise * clean.n_train)
    assert int(noisy.y_train.max()) < noisy.n_outputs


def test_label_noise_depends_on_seed():
    a = load(DatasetSpec(name="modular", options={"p": 11}, label_noise=0.3, seed=0))
    b = load(DatasetSpec(name="modular", options={"p": 11}, label_noise=0.3, seed=1))
    assert not torch.equal(a.y_train, b.y_train)


def test_flipped_labels_are_uniform_over_other_classes():
    y = np.zeros(30_000, dtype=np.int64)
    noisy, flipped = flip_labels(y, 1 / 3, 4, np.random.default_rng(0))
    assert len(flipped) == 10_000 and (noisy[flipped] != 0).all()
    counts = np.bincount(noisy[flipped], minlength=4)[1:]
    assert np.abs(counts / 10_000 - 1 / 3).max() < 0.02


def test_label_noise_on_regression_is_refused():
    with pytest.raises(DatasetError, match=r"label_noise=0\.1 needs a classification dataset; 'teacher'"):
        load(DatasetSpec(name="teacher", label_noise=0.1))


@pytest.mark.parametrize("test_size", [0.2, 0.25, 0.5])
def test_split_is_stratified(test_size):
    labels = np.repeat(np.arange(3), [50, 30, 20])
    train, test = split_indices(100, test_size, np.random.default_rng(0), labels)
    assert sorted(np.concatenate([train, test]).tolist()) == list(range(100))
    assert len(test) == round(test_size * 100)
    expected = np.array([50, 30, 20]) * test_size
    assert np.abs(np.bincount(labels[test], minlength=3) - expected).max() < 1


def test_loaded_split_is_stratified_and_sized():
    ds = load(DatasetSpec(name="breast_cancer", test_size=0.3))
    y = torch.cat([ds.y_train, ds.y_test])
    assert ds.n_test == round(0.3 * len(y))
    expected = y.bincount().double() * ds.n_test / len(y)
    assert (ds.y_test.bincount().double() - expected).abs().max() < 1


def test_split_does_not_depend_on_corruption_knobs():
    a = load(DatasetSpec(name="iris", seed=7))
    b = load(DatasetSpec(name="iris", seed=7, label_noise=0.2, train_fraction=0.5))
    assert torch.equal(a.x_test, b.x_test) and torch.equal(a.y_test, b.y_test)


def test_subsample_keeps_at_least_one():
    assert len(subsample_indices(10, 0.01, np.random.default_rng(0))) == 1
