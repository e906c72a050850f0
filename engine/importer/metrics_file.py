"""A run's logged metrics from a CSV or JSON-lines file: one row per step, one column per metric.

A row needs the step (column ``step`` unless told otherwise); an ``epoch`` column gives
each step's epoch. Every other column whose values are numbers is a metric. Its name
says the split: ``train_loss`` -> split ``train``, name ``loss`` (also ``test_``, ``val_``,
``valid_``, ``validation_``, ``eval_``, ``batch_``), ``train/loss`` likewise; any other
name (``lr``) is recorded under split ``logged``. Blank cells are missing values;
NaN/inf values are left out (as the trainer leaves them out). A column that holds
no number at all (a timestamp, a host name) is skipped and reported; a column that
mixes numbers and text, or a step that gives one metric two different values, is an
error naming the file, the line and the column.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from engine.bounds import (
    MAX_IMPORT_METRIC_VALUES,
    MAX_IMPORT_METRICS_BYTES,
    MAX_STEPS,
    check_file_size,
    check_name,
    short_repr,
)

__all__ = ["KNOWN_SPLITS", "MetricTable", "metric_key", "read_metrics"]

KNOWN_SPLITS = ("train", "test", "val", "valid", "validation", "eval", "batch")
LOGGED_SPLIT = "logged"


def metric_key(column: str) -> tuple[str, str]:
    """``(split, name)`` of a metric column (see the module docstring)."""
    for sep in ("/", "_"):
        head, _, tail = column.partition(sep)
        if tail and head.lower() in KNOWN_SPLITS:
            return head.lower(), tail
    return LOGGED_SPLIT, column


@dataclass
class MetricTable:
    """Metric values by ``(step, column)``, each step's epoch, and the columns skipped as text."""

    source: str
    values: dict[tuple[int, str], float] = field(default_factory=dict)
    epochs: dict[int, float] = field(default_factory=dict)
    skipped_columns: list[str] = field(default_factory=list)
    _lines: dict[tuple[int, str], int] = field(default_factory=dict, repr=False)
    _text: dict[str, tuple[int, str]] = field(default_factory=dict, repr=False)
    _numeric: set[str] = field(default_factory=set, repr=False)

    def rows(self) -> list[dict]:
        """Metric rows ``{step, split, name, value}`` (no ``run_id``), by step."""
        return [{"step": step, "split": metric_key(col)[0], "name": metric_key(col)[1], "value": value}
                for (step, col), value in sorted(self.values.items())]

    def add(self, step: int, column: str, raw, line: int) -> None:
        if raw is None or raw == "":
            return
        value = _number(raw)
        if value is None:
            self._text.setdefault(column, (line, raw))
            return
        self._numeric.add(column)
        if not math.isfinite(value):
            return
        key = (step, column)
        if key in self.values and self.values[key] != value:
            raise ValueError(f"{self.source} line {line}: step {step} gives {column!r} = {value!r}, but line "
                             f"{self._lines[key]} gave {self.values[key]!r}; each step may give a metric once")
        if key not in self.values and len(self.values) >= MAX_IMPORT_METRIC_VALUES:
            raise ValueError(f"{self.source} holds more than {MAX_IMPORT_METRIC_VALUES:,} metric values; one "
                             "imported run may have at most that many (engine.bounds.MAX_IMPORT_METRIC_VALUES): "
                             "thin the file (e.g. every 10th step)")
        self.values[key], self._lines[key] = value, line

    def finish(self) -> MetricTable:
        mixed = sorted(set(self._text) & self._numeric)
        if mixed:
            col = mixed[0]
            line, raw = self._text[col]
            raise ValueError(f"{self.source} line {line}: column {col!r} holds {short_repr(raw)}, which is not a "
                             "number, while other rows hold numbers; fix or blank that value")
        self.skipped_columns = sorted(set(self._text) - self._numeric)
        return self


def _number(raw) -> float | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return float(raw)
    if isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            return None
    return None


def _step(raw, source: str, line: int, key: str) -> int:
    value = _number(raw)
    if value is None or not math.isfinite(value) or value != int(value) or not 0 <= value <= MAX_STEPS:
        raise ValueError(f"{source} line {line}: {key!r} must be a whole number in [0, {MAX_STEPS}]; "
                         f"got {short_repr(raw)}")
    return int(value)


def read_metrics(path: str | Path, *, step_key: str = "step", skip: frozenset[str] = frozenset(),
                 drop_value: float | None = None) -> MetricTable:
    """Read a metrics file: ``.csv``, or JSON lines (``.jsonl``, ``.json``: one object per line).

    Parameters
    ----------
    step_key : str
        The column holding the step.
    skip : frozenset of str
        Columns that are not metrics (bookkeeping of the tool that wrote the file).
    drop_value : float, optional
        A placeholder the writer used for "not measured" (the model zoos write -999).
    """
    path = Path(path)
    check_file_size(path, MAX_IMPORT_METRICS_BYTES, "metrics file",
                    fix="thin it (e.g. every 10th step); the limit is engine.bounds.MAX_IMPORT_METRICS_BYTES")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"metrics file {path} is not UTF-8 text: {exc}") from None
    rows = _csv_rows(text, path) if path.suffix.lower() == ".csv" else _json_rows(text, path)
    table = MetricTable(str(path))
    skip = skip | {step_key, "epoch"}
    named: set[str] = set()
    for line, row in rows:
        if step_key not in row or row[step_key] in (None, ""):
            raise ValueError(f"{path} line {line}: no {step_key!r} value; every row needs the step it was "
                             f"logged at (columns: {short_repr(sorted(row))})")
        step = _step(row[step_key], str(path), line, step_key)
        epoch = _number(row.get("epoch"))
        if epoch is not None and math.isfinite(epoch):
            table.epochs[step] = epoch
        for column in row.keys() - named:  # each column's name checked once: it is shown on every page
            check_name(column, f"{path.name}: metric column {short_repr(column)}")
            named.add(column)
        for column, raw in row.items():
            if column not in skip and not (drop_value is not None and _number(raw) == drop_value):
                table.add(step, column, raw, line)
    return table.finish()


def _csv_rows(text: str, path: Path):
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames:
        raise ValueError(f"metrics file {path} is empty; a CSV needs a header row with a 'step' column")
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:  # a cell past csv.field_size_limit(), a NUL byte
            raise ValueError(f"{path} line {reader.line_num + 1}: a cell of more than {csv.field_size_limit():,} "
                             f"characters, or not CSV ({exc}); a metrics CSV holds short numbers") from None
        if None in row:  # more cells than the header has columns
            raise ValueError(f"{path} line {reader.line_num}: {len(row[None]) + len(reader.fieldnames)} cells but "
                             f"the header has {len(reader.fieldnames)} columns")
        yield reader.line_num, row


def _json_rows(text: str, path: Path):
    for line, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except RecursionError:
            raise ValueError(f"{path} line {line} nests lists or objects too deeply; a JSON-lines metrics file "
                             "holds one flat object per line") from None
        except ValueError as exc:
            raise ValueError(f"{path} line {line} is not JSON ({exc}); a JSON-lines metrics file holds one "
                             "object per line") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path} line {line}: each line must be a JSON object; got {short_repr(row)}")
        yield line, row
