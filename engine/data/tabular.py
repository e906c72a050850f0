"""The binarized tabular benchmarks bundled in ``assets/datasets/tabular/``.

COMPAS, MONK 1–3, Car Evaluation and Bar (in-vehicle coupon): every column is 0/1
and the last one is the label, the form sparse-tree Rashomon methods (TreeFARMS,
GOSDT) take. Origins and licences are in the README beside the files.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd

from engine.config import DatasetSpec
from engine.data.dataset import DatasetError, SourceData

__all__ = ["TABULAR_DIR", "TABULAR_FILES", "binarized_loader"]

TABULAR_DIR = Path(__file__).resolve().parents[2] / "assets" / "datasets" / "tabular"

# registered name -> (file, description)
TABULAR_FILES: dict[str, tuple[str, str]] = {
    "compas": ("compas_binned.csv", "COMPAS recidivism, binarized (6,907 rows, 12 binary features)"),
    "monk1": ("monk_1.csv", "MONK's problem 1, one-hot (124 rows, 11 binary features)"),
    "monk2": ("monk_2.csv", "MONK's problem 2, one-hot (169 rows, 11 binary features)"),
    "monk3": ("monk_3.csv", "MONK's problem 3, one-hot (122 rows, 11 binary features)"),
    "car_evaluation": ("car_evaluation.csv", "Car Evaluation, one-hot (1,728 rows, 15 binary features)"),
    "bar7": ("bar7.csv", "In-vehicle coupon 'Bar', binarized (1,913 rows, 14 binary features)"),
}


@cache
def _read(file: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    path = TABULAR_DIR / file
    if not path.is_file():
        raise DatasetError(
            f"bundled dataset file {path} is missing; restore assets/datasets/tabular/ from the repository"
        )
    table = pd.read_csv(path)
    values = table.to_numpy()
    if not np.isin(values, (0, 1)).all():
        raise DatasetError(f"{path} should hold only 0/1 values; it has others")
    features = tuple(str(c) for c in table.columns[:-1])
    return values[:, :-1].astype(np.float32), values[:, -1].astype(np.int64), features, str(table.columns[-1])


def binarized_loader(name: str) -> Callable[[DatasetSpec], SourceData]:
    """A loader for one bundled binarized set: 0/1 float features, the last column as 0/1 label."""
    file, _ = TABULAR_FILES[name]

    def load_binarized(spec: DatasetSpec) -> SourceData:
        x, y, features, _label = _read(file)
        return SourceData(x=x, y=y, task="classification", feature_names=list(features), class_names=["0", "1"])

    load_binarized.__doc__ = TABULAR_FILES[name][1]
    return load_binarized
