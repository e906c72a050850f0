"""Logged metrics from CSV / JSON lines: names to splits, blanks, text columns, conflicts, bounds."""

import pytest

import engine.importer.metrics_file as mf
from engine.importer import metric_key, read_metrics


@pytest.mark.parametrize(("column", "key"), [
    ("train_loss", ("train", "loss")), ("test_acc", ("test", "acc")), ("val_top5_acc", ("val", "top5_acc")),
    ("train/loss", ("train", "loss")), ("Validation_loss", ("validation", "loss")), ("lr", ("logged", "lr")),
    ("loss", ("logged", "loss")), ("grad_norm", ("logged", "grad_norm")),
])
def test_metric_key(column, key):
    assert metric_key(column) == key


def test_csv_with_blanks_epochs_and_a_text_column(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("step,epoch,train_loss,val_acc,time\n0,0,0.9,,a\n10,0.5,0.5,,b\n10,0.5,,0.7,b\n20,1,nan,0.8,c\n")
    table = read_metrics(path)
    assert table.values == {(0, "train_loss"): 0.9, (10, "train_loss"): 0.5, (10, "val_acc"): 0.7,
                            (20, "val_acc"): 0.8}
    assert table.epochs == {0: 0.0, 10: 0.5, 20: 1.0}
    assert table.skipped_columns == ["time"]
    assert {(r["step"], r["split"], r["name"]) for r in table.rows()} == {
        (0, "train", "loss"), (10, "train", "loss"), (10, "val", "acc"), (20, "val", "acc")}


def test_json_lines_skip_keys_and_a_placeholder(tmp_path):
    path = tmp_path / "result.json"
    path.write_text('{"training_iteration": 0, "train_loss": -999, "test_acc": 0.5, "date": "x"}\n\n'
                    '{"training_iteration": 1, "train_loss": 0.4, "test_acc": 0.7, "date": "y"}\n')
    table = read_metrics(path, step_key="training_iteration", skip=frozenset({"date"}), drop_value=-999.0)
    assert table.values == {(0, "test_acc"): 0.5, (1, "train_loss"): 0.4, (1, "test_acc"): 0.7}


@pytest.mark.parametrize(("text", "match"), [
    ("step,loss\n0,0.5\n1,high\n", r"m.csv line 3: column 'loss' holds 'high', which is not a number, while other "
                                   r"rows hold numbers"),
    ("step,loss\n0,0.5\n0,0.6\n", r"m.csv line 3: step 0 gives 'loss' = 0.6, but line 2 gave 0.5; each step may give "
                                  r"a metric once"),
    ("loss\n0.5\n", r"m.csv line 2: no 'step' value; every row needs the step it was logged at"),
    ("step,loss\n1.5,0.5\n", r"m.csv line 2: 'step' must be a whole number in \[0, 10000000\]; got '1.5'"),
    ("step,loss\n0,0.5,7\n", r"m.csv line 2: 3 cells but the header has 2 columns"),
    ("", r"metrics file .*m.csv is empty"),
])
def test_bad_csv_is_explained_with_the_line(tmp_path, text, match):
    path = tmp_path / "m.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_metrics(path)


def test_bad_json_lines_are_explained(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"step": 0, "loss": 1}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"m.jsonl line 2: each line must be a JSON object; got \[1, 2\]"):
        read_metrics(path)
    path.write_text('{"step": 0, "loss": 1}\n{"step": 1,\n')
    with pytest.raises(ValueError, match=r"m.jsonl line 2 is not JSON"):
        read_metrics(path)


def test_metrics_files_are_bounded(tmp_path, monkeypatch):
    path = tmp_path / "m.csv"
    path.write_text("step,a,b\n" + "".join(f"{i},{i},{i}\n" for i in range(10)))
    monkeypatch.setattr(mf, "MAX_IMPORT_METRICS_BYTES", 20)
    with pytest.raises(ValueError, match=r"m.csv has \d+ bytes; at most 20 are read"):
        read_metrics(path)
    monkeypatch.setattr(mf, "MAX_IMPORT_METRICS_BYTES", 1 << 20)
    monkeypatch.setattr(mf, "MAX_IMPORT_METRIC_VALUES", 15)
    with pytest.raises(ValueError, match=r"holds more than 15 metric values; one imported run may have at most"):
        read_metrics(path)


# -- hostile files ----------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "text", "match"), [
    ("m.jsonl", '{"step": 0, "x": ' + "[" * 100_000 + "]" * 100_000 + "}\n",
     r"m.jsonl line 1 nests lists or objects too deeply"),
    ("m.csv", "step,loss\n0," + "9" * 200_000 + "\n", r"m.csv line 2: a cell of more than 131,072 characters"),
    ("m.csv", "step,train_\x1b[2Jloss\n0,0.5\n", r"m.csv: metric column 'train_\\x1b\[2Jloss' contains control or "
                                                 r"format characters \(U\+001B\)"),
    ("m.jsonl", '{"step": 0, "' + "a" * 500 + '": 1}\n', r"m.jsonl: metric column 'aaa.* has 500 characters; "
                                                         r"at most 100"),
])
def test_hostile_metrics_files_are_refused_with_a_value_error(tmp_path, name, text, match):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(ValueError, match=match):
        read_metrics(path)
