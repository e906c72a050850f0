"""User files: NPZ, CSV and Parquet, the good and the bad."""

import numpy as np
import pandas as pd
import pytest
import torch

from engine.config import DatasetSpec
from engine.data import DatasetError, inspect_table, load


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "age": rng.normal(40, 10, 60),
        "income": rng.integers(0, 100, 60),
        "member": rng.integers(0, 2, 60).astype(bool),
        "species": np.array(["cat", "dog", "eel"])[np.arange(60) % 3],
    })


def _csv(tmp_path, frame, name="data.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def test_csv_string_labels_become_classes(tmp_path, table):
    ds = load(DatasetSpec(name="csv", path=str(_csv(tmp_path, table)), label="species"))
    assert ds.task == "classification" and ds.class_names == ["cat", "dog", "eel"]
    assert ds.feature_names == ["age", "income", "member"] and ds.input_shape == (3,)
    assert ds.n_train + ds.n_test == 60 and ds.y_test.bincount().tolist() == [5, 5, 5]


def test_parquet_float_label_is_regression(tmp_path, table):
    path = tmp_path / "data.parquet"
    table.drop(columns="species").to_parquet(path)
    ds = load(DatasetSpec(name="parquet", path=str(path), label="age"))
    assert ds.task == "regression" and ds.n_outputs == 1 and ds.y_train.shape == (45, 1)
    assert ds.class_names == [] and ds.feature_names == ["income", "member"]


def test_csv_integer_labels_mapped_when_not_contiguous(tmp_path, table):
    table["grade"] = np.where(np.arange(60) % 2, 10, 20)
    path = _csv(tmp_path, table.drop(columns="species"))
    ds = load(DatasetSpec(name="csv", path=str(path), label="grade"))
    assert ds.class_names == ["10", "20"] and set(ds.y_train.tolist()) == {0, 1}


def test_csv_features_option_and_standardize(tmp_path, table):
    path = _csv(tmp_path, table)
    ds = load(DatasetSpec(name="csv", path=str(path), label="species",
                          options={"features": "age, income", "standardize": True}))
    assert ds.feature_names == ["age", "income"]
    torch.testing.assert_close(ds.x_train.mean(0), torch.zeros(2), atol=1e-5, rtol=0)


def test_npz_both_layouts(tmp_path):
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 1, 6)), rng.integers(0, 4, 40)
    np.savez(tmp_path / "a.npz", x=x, y=y)
    np.savez(tmp_path / "b.npz", x_train=x[:30], y_train=y[:30], x_test=x[30:], y_test=y[30:])
    a = load(DatasetSpec(name="npz", path=str(tmp_path / "a.npz"), test_size=0.5))
    b = load(DatasetSpec(name="npz", path=str(tmp_path / "b.npz")))
    assert a.input_shape == b.input_shape == (1, 6) and (a.n_train, a.n_test) == (20, 20)
    assert (b.n_train, b.n_test) == (30, 10) and b.task == "classification"
    torch.testing.assert_close(b.x_test, torch.tensor(x[30:], dtype=torch.float32))


def test_npz_float_targets_are_regression(tmp_path):
    np.savez(tmp_path / "r.npz", x=np.ones((10, 3)), y=np.linspace(0, 1, 20).reshape(10, 2))
    ds = load(DatasetSpec(name="npz", path=str(tmp_path / "r.npz")))
    assert ds.task == "regression" and ds.n_outputs == 2 and ds.y_train.dtype == torch.float32


def test_inspect_table(tmp_path, table):
    assert inspect_table(_csv(tmp_path, table)) == ["age", "income", "member", "species"]
    table.to_parquet(tmp_path / "t.parquet")
    assert inspect_table(tmp_path / "t.parquet") == ["age", "income", "member", "species"]


# --- bad files: each error names the problem; nothing is written -------------------------


def _refused(tmp_path, spec, match):
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(DatasetError, match=match):
        load(spec)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_missing_label_column_lists_columns(tmp_path, table):
    spec = DatasetSpec(name="csv", path=str(_csv(tmp_path, table)), label="target")
    _refused(tmp_path, spec, r"label column 'target' is not in the table; columns are \['age', 'income'")


def test_no_label_given(tmp_path, table):
    spec = DatasetSpec(name="csv", path=str(_csv(tmp_path, table)))
    _refused(tmp_path, spec, r"set label to the label column; columns are \[")


def test_non_numeric_features_named(tmp_path, table):
    table["city"] = "Oslo"
    spec = DatasetSpec(name="csv", path=str(_csv(tmp_path, table)), label="income")
    _refused(tmp_path, spec, r"feature columns \['species', 'city'\] are not numeric .*one-hot")


def test_nans_named_with_counts(tmp_path, table):
    table.loc[[1, 2], "age"] = np.nan
    table.loc[[2, 7], "income"] = np.nan
    spec = DatasetSpec(name="csv", path=str(_csv(tmp_path, table)), label="species")
    _refused(tmp_path, spec, r"columns 'age' \(2\), 'income' \(2\), 3 rows")


def test_nan_in_parquet_label(tmp_path, table):
    table.loc[4, "species"] = None
    table.to_parquet(tmp_path / "t.parquet")
    spec = DatasetSpec(name="parquet", path=str(tmp_path / "t.parquet"), label="species")
    _refused(tmp_path, spec, r"columns 'species' \(1\), 1 rows")


def test_npz_mismatched_lengths(tmp_path):
    np.savez(tmp_path / "m.npz", x=np.zeros((100, 3)), y=np.zeros(90, dtype=int))
    _refused(tmp_path, DatasetSpec(name="npz", path=str(tmp_path / "m.npz")), r"'x' has 100 rows but 'y' has 90")


def test_npz_test_split_mismatched_lengths(tmp_path):
    np.savez(tmp_path / "m.npz", x_train=np.zeros((10, 3)), y_train=np.zeros(10, dtype=int),
             x_test=np.zeros((5, 3)), y_test=np.zeros(4, dtype=int))
    spec = DatasetSpec(name="npz", path=str(tmp_path / "m.npz"))
    _refused(tmp_path, spec, r"'x_test' has 5 rows but 'y_test' has 4")


def test_npz_wrong_keys(tmp_path):
    np.savez(tmp_path / "k.npz", inputs=np.zeros((4, 2)), labels=np.zeros(4))
    _refused(tmp_path, DatasetSpec(name="npz", path=str(tmp_path / "k.npz")), r"it holds \['inputs', 'labels'\]")


def test_npz_nans(tmp_path):
    x = np.zeros((10, 3))
    x[2, 1] = x[5, 0] = x[5, 2] = np.nan
    np.savez(tmp_path / "n.npz", x=x, y=np.zeros(10, dtype=int))
    _refused(tmp_path, DatasetSpec(name="npz", path=str(tmp_path / "n.npz")), r"3 NaN/inf values in 2 rows")


def test_npz_object_arrays_refused(tmp_path):
    np.savez(tmp_path / "o.npz", x=np.array([[1], "a"], dtype=object), y=np.zeros(2))
    _refused(tmp_path, DatasetSpec(name="npz", path=str(tmp_path / "o.npz")), r"object arrays")


def test_missing_file(tmp_path):
    spec = DatasetSpec(name="csv", path=str(tmp_path / "nope.csv"), label="y")
    _refused(tmp_path, spec, r"nope\.csv' does not exist")


def test_path_required(tmp_path):
    _refused(tmp_path, DatasetSpec(name="parquet"), r"set path, e\.g\. DatasetSpec\(name='parquet', path=")


def test_unknown_feature_in_option(tmp_path, table):
    spec = DatasetSpec(name="csv", path=str(_csv(tmp_path, table)), label="species", options={"features": "age,height"})
    _refused(tmp_path, spec, r"unknown \['height'\]")
