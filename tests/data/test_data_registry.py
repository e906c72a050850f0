"""The registry: names, options, user loaders and their errors."""

import numpy as np
import pytest
import torch

from engine.config import ConfigError, DatasetSpec
from engine.data import DatasetError, SourceData, available, kind_of, load, register, registry


@pytest.fixture(autouse=True)
def _private_registry(monkeypatch):
    """Registrations made by a test vanish after it."""
    monkeypatch.setattr(registry, "DATASETS", registry.DATASETS.copy())


def test_unknown_name_lists_available():
    with pytest.raises(ValueError, match=r"unknown dataset 'mnist2d'; available: .*digits.*mnist1d"):
        load("mnist2d")


def test_unknown_option_lists_valid_ones():
    with pytest.raises(DatasetError, match=r"no option 'q'; its options are: p=97"):
        load(DatasetSpec(name="modular", options={"q": 5}))
    with pytest.raises(DatasetError, match=r"'digits' has no option 'noise'; its options are: none"):
        load(DatasetSpec(name="digits", options={"noise": 0.1}))


@pytest.mark.parametrize("value", [7.5, "97", True])
def test_mistyped_option(value):
    with pytest.raises(DatasetError, match=r"option 'p' of dataset 'modular' must be int \(default 97\); got"):
        load(DatasetSpec(name="modular", options={"p": value}))


def test_integral_float_accepted_for_int_option():
    assert load(DatasetSpec(name="modular", options={"p": 7.0})).vocab_size == 7


@pytest.mark.parametrize(("name", "options", "match"), [
    ("modular", {"p": 1}, r"option 'p' of dataset 'modular' must be between 2 and 1000 .*; got 1"),
    ("moons", {"noise": -1.0}, r"option 'noise' of dataset 'moons' must be >= 0; got -1\.0"),
    ("teacher", {"teacher": "cnn"}, r"option 'teacher' of dataset 'teacher' must be 'linear' or 'mlp'; got 'cnn'"),
    ("spirals", {"n_classes": 1}, r"'n_classes' of dataset 'spirals' must be between 2 and 100; got 1"),
    ("mnist1d", {"n_samples": 10}, r"'n_samples' of dataset 'mnist1d' must be between 100 and 200000; got 10"),
])
def test_option_values_checked(name, options, match):
    with pytest.raises(DatasetError, match=match):
        load(DatasetSpec(name=name, options=options))


def test_path_on_builtin_refused():
    with pytest.raises(DatasetError, match=r"only read by the file datasets npz, csv, parquet, imagefolder, "
                                          r"images; 'moons' got path="):
        load(DatasetSpec(name="moons", path="x.csv"))


def test_load_from_dict_validates():
    assert load({"name": "iris", "seed": 2}).spec == DatasetSpec(name="iris", seed=2)
    with pytest.raises(ConfigError, match=r"train_fraction"):
        load({"name": "iris", "train_fraction": 2.0})


def _ring(spec, *, n: int = 40, radius: float = 1.0):
    rng = np.random.default_rng(spec.seed)
    angle = rng.uniform(0, 2 * np.pi, n)
    return SourceData(x=radius * np.stack([np.cos(angle), np.sin(angle)], 1), y=(angle > np.pi).astype(np.int64),
                      task="classification", class_names=["top", "bottom"])


def _other_ring(spec, *, n: int = 40, radius: float = 1.0):
    return _ring(spec, n=n, radius=radius)


def test_register_user_loader():
    register("test_ring", _ring, description="a ring", kind="user")
    assert available(kind="user")["test_ring"] == "a ring" and kind_of("test_ring") == "user"
    ds = load(DatasetSpec(name="test_ring", options={"n": 20, "radius": 2}, label_noise=0.2))
    assert ds.n_train + ds.n_test == 20 and ds.class_names == ["top", "bottom"]
    assert torch.allclose(ds.x_train.norm(dim=1), torch.tensor(2.0))
    register("test_ring", _ring, description="a ring", kind="user")  # the same again: a no-op
    with pytest.raises(ValueError, match=r"dataset 'test_ring' is already registered as .*_ring; refusing to "
                                         r"replace it with .*_other_ring"):
        register("test_ring", _other_ring, description="a ring", kind="user")


def test_register_refuses_bad_loaders():
    with pytest.raises(TypeError, match=r"exactly one positional argument"):
        register("test_bad", lambda spec, n: None)
    with pytest.raises(TypeError, match=r"option 'n' of loader 'test_bad' needs a bool/int/float/str default"):
        register("test_bad", lambda spec, *, n=None: None)
    assert "test_bad" not in available()


def test_loader_returning_wrong_type():
    register("test_wrong", lambda spec: (np.zeros((3, 2)), np.zeros(3)))
    with pytest.raises(TypeError, match=r"must return engine\.data\.SourceData; got tuple"):
        load("test_wrong")


def test_loader_with_bad_arrays():
    register("test_nan", lambda spec: SourceData(x=np.full((4, 2), np.nan), y=np.zeros(4, dtype=np.int64),
                                                 task="classification"))
    with pytest.raises(DatasetError, match=r"'test_nan': x has 8 NaN/inf values"):
        load("test_nan")
