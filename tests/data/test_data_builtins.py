"""Every built-in dataset loads with the contracted shapes, dtypes and task."""

import numpy as np
import pytest
import torch

from engine.config import DatasetSpec
from engine.data import available, load, options_of

# name -> (input_shape, task, n_outputs, x dtype)
EXPECTED = {
    "mnist1d": ((1, 40), "classification", 10, torch.float32),
    "digits": ((1, 8, 8), "classification", 10, torch.float32),
    "breast_cancer": ((30,), "classification", 2, torch.float32),
    "wine": ((13,), "classification", 3, torch.float32),
    "iris": ((4,), "classification", 3, torch.float32),
    "moons": ((2,), "classification", 2, torch.float32),
    "spirals": ((2,), "classification", 3, torch.float32),
    "gaussians": ((2,), "classification", 3, torch.float32),
    "teacher": ((10,), "regression", 1, torch.float32),
    "modular": ((2,), "classification", 97, torch.int64),
    "rid_chen": ((10,), "classification", 2, torch.float32),
    "markov": ((16,), "sequence", 16, torch.int64),
    "compas": ((12,), "classification", 2, torch.float32),
    "monk1": ((11,), "classification", 2, torch.float32),
    "monk2": ((11,), "classification", 2, torch.float32),
    "monk3": ((11,), "classification", 2, torch.float32),
    "car_evaluation": ((15,), "classification", 2, torch.float32),
    "bar7": ((14,), "classification", 2, torch.float32),
}


def test_every_builtin_is_tested():
    assert set(available(kind="builtin")) | set(available(kind="tabular")) == set(EXPECTED)
    assert set(available(kind="file")) == {"npz", "csv", "parquet", "imagefolder", "images"}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_builtin_shapes_dtypes_task(name):
    shape, task, n_outputs, x_dtype = EXPECTED[name]
    ds = load(name)
    assert (ds.name, ds.input_shape, ds.task, ds.n_outputs) == (name, shape, task, n_outputs)
    assert ds.spec == DatasetSpec(name=name)
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.dtype == x_dtype and tuple(x.shape[1:]) == shape
        assert len(x) == len(y) > 0
        if task == "classification":
            assert y.dtype == torch.int64 and y.ndim == 1
            assert 0 <= int(y.min()) and int(y.max()) < n_outputs
        elif task == "sequence":  # next-token targets: the inputs shifted by one position
            assert y.dtype == torch.int64 and y.shape == x.shape
            assert torch.equal(x[:, 1:], y[:, :-1]) and int(y.max()) < n_outputs
        else:
            assert y.dtype == torch.float32 and tuple(y.shape[1:]) == (n_outputs,)
        if x_dtype == torch.float32:
            assert torch.isfinite(x).all()
    assert len(ds.feature_names) == int(np.prod(shape))
    assert len(ds.class_names) == (n_outputs if task == "classification" else 0)  # tokens have no class names
    assert name in ds.describe() and f"{ds.n_train} train" in ds.describe()


def test_mnist1d_keeps_its_own_split():
    ds = load("mnist1d")
    assert (ds.n_train, ds.n_test) == (4000, 1000)
    assert set(ds.y_train.tolist()) == set(range(10))


def test_digits_pixels_in_unit_interval():
    ds = load("digits")
    assert float(ds.x_train.min()) == 0.0 and float(ds.x_train.max()) == 1.0


@pytest.mark.parametrize("name", ["breast_cancer", "wine", "iris"])
def test_sklearn_tables_standardised_with_train_statistics(name):
    ds = load(name)
    torch.testing.assert_close(ds.x_train.mean(0), torch.zeros(ds.input_shape), atol=1e-5, rtol=0)
    torch.testing.assert_close(ds.x_train.std(0, unbiased=False), torch.ones(ds.input_shape), atol=1e-4, rtol=0)
    assert ds.x_test.mean(0).abs().max() > 1e-3  # test set uses the training statistics, not its own


def test_standardisation_ignores_train_fraction():
    """Test inputs are identical across a sweep over train_fraction."""
    full, part = load("wine"), load(DatasetSpec(name="wine", train_fraction=0.5))
    torch.testing.assert_close(full.x_test, part.x_test, rtol=0, atol=0)


def test_modular_targets_are_sums_mod_p():
    ds = load(DatasetSpec(name="modular", options={"p": 13}))
    assert ds.vocab_size == 13 and ds.n_outputs == 13
    x = torch.cat([ds.x_train, ds.x_test])
    y = torch.cat([ds.y_train, ds.y_test])
    assert len(x) == 13 * 13
    assert torch.equal(y, (x[:, 0] + x[:, 1]) % 13)
    assert len({tuple(r) for r in x.tolist()}) == 13 * 13  # every pair exactly once


TABULAR = {"compas": (6907, 12), "monk1": (124, 11), "monk2": (169, 11), "monk3": (122, 11),
           "car_evaluation": (1728, 15), "bar7": (1913, 14)}


@pytest.mark.parametrize("name", sorted(TABULAR))
def test_tabular_assets_rows_and_binary_features(name):
    rows, features = TABULAR[name]
    ds = load(name)
    assert ds.n_train + ds.n_test == rows
    assert ds.input_shape == (features,) and len(ds.feature_names) == features
    x = torch.cat([ds.x_train, ds.x_test])
    assert set(x.unique().tolist()) <= {0.0, 1.0}
    assert set(torch.cat([ds.y_train, ds.y_test]).unique().tolist()) == {0, 1}


def test_compas_feature_names_from_header():
    ds = load("compas")
    assert ds.feature_names[0] == "sex:Female" and ds.feature_names[-1] == "priors:>3"


def test_teacher_options():
    ds = load(DatasetSpec(name="teacher", options={"n_features": 5, "n_targets": 3, "teacher": "mlp",
                                                   "n_samples": 200, "noise": 0.0}))
    assert ds.task == "regression" and ds.input_shape == (5,) and ds.n_outputs == 3
    assert ds.y_train.shape == (150, 3) and ds.y_test.shape == (50, 3)


def test_teacher_noise_changes_targets_not_inputs():
    clean = load(DatasetSpec(name="teacher", options={"noise": 0.0}))
    noisy = load(DatasetSpec(name="teacher", options={"noise": 0.5}))
    assert torch.equal(clean.x_train, noisy.x_train)
    residual = (noisy.y_train - clean.y_train).std().item()
    assert 0.4 < residual < 0.6


def test_linear_teacher_is_exactly_linear_without_noise():
    ds = load(DatasetSpec(name="teacher", options={"noise": 0.0, "n_samples": 300}))
    x = torch.cat([ds.x_train, torch.ones(ds.n_train, 1)], 1).double()
    coef = torch.linalg.lstsq(x, ds.y_train.double()).solution
    assert torch.allclose(x @ coef, ds.y_train.double(), atol=1e-5)


@pytest.mark.parametrize("k", [2, 5])
def test_spirals_and_gaussians_class_count(k):
    for name in ("spirals", "gaussians"):
        ds = load(DatasetSpec(name=name, options={"n_classes": k, "n_samples": 100 * k}))
        assert ds.n_outputs == k and ds.n_train + ds.n_test == 100 * k
        assert torch.cat([ds.y_train, ds.y_test]).bincount().tolist() == [100] * k


def test_gaussians_dimension_option():
    ds = load(DatasetSpec(name="gaussians", options={"n_features": 7}))
    assert ds.input_shape == (7,)


def test_options_of_lists_defaults():
    assert options_of("modular") == {"p": 97}
    assert options_of("moons") == {"n_samples": 1000, "noise": 0.1}
    assert options_of("digits") == {}
