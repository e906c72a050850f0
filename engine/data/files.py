"""User files: NPZ arrays and CSV/Parquet tables with a named label column.

Every check runs before anything is returned, and nothing is ever written, so a
bad file leaves no trace; each error names the file, what is wrong (column names,
counts, lengths) and how to fix it.

Labels decide the task: integers, booleans and strings are classes (strings and
non-contiguous integers are mapped to ids ``0..K-1`` in sorted order, the original
values kept as ``class_names``); floats are regression targets.

Sizes are checked before anything is read whole: a file's size, an NPZ's array shapes and
dtypes from the ``.npy`` headers inside it (so a small file that would decompress to
gigabytes is refused unread), a Parquet file's row count from its metadata. The limit is
:func:`max_data_bytes` (``$ZOOSCOPE_MAX_DATA_BYTES``, default 2 GiB).
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd

from engine.bounds import MAX_NAME_LENGTH, check_file_size, short_repr
from engine.config import DatasetSpec
from engine.data.dataset import DatasetError, SourceData

__all__ = ["DEFAULT_MAX_DATA_BYTES", "MAX_CLASSES", "MAX_DATA_BYTES_ENV", "check_data_file_size", "encode_labels",
           "inspect_table",
           "load_csv", "load_npz", "load_parquet", "max_data_bytes", "npz_headers"]

_NPZ_LAYOUTS = (("x", "y"), ("x_train", "y_train", "x_test", "y_test"))
MAX_DATA_BYTES_ENV = "ZOOSCOPE_MAX_DATA_BYTES"
DEFAULT_MAX_DATA_BYTES = 2 << 30  # 2 GiB: a user file's size, and the arrays it holds once loaded
_MAX_NPZ_MEMBERS = 64


def max_data_bytes() -> int:
    """The most bytes a user data file may hold, on disk and once loaded.

    ``$ZOOSCOPE_MAX_DATA_BYTES`` (a whole number of bytes) when set, else 2 GiB. Read at
    each load, so a server's environment sets it for its workers too.
    """
    text = os.environ.get(MAX_DATA_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_DATA_BYTES
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise DatasetError(f"${MAX_DATA_BYTES_ENV} must be a positive whole number of bytes; got {text[:40]!r}")
    return value


def check_data_file_size(path: Path, limit: int) -> int:
    """Size of the user's data file ``path``: :func:`engine.bounds.check_file_size` raising a
    ``DatasetError`` that says how to get under ``limit``."""
    return check_file_size(path, limit, "data file", error=DatasetError,
                           fix=f"use a subset, or raise ${MAX_DATA_BYTES_ENV} on the server")


def npz_headers(path: str | Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """``name -> (shape, dtype)`` of every array in an NPZ, read from the ``.npy`` headers only.

    Nothing is decompressed beyond each header, so a file whose arrays would take gigabytes
    costs a few kilobytes to inspect. Members that are not ``.npy`` arrays are left out.

    Raises
    ------
    DatasetError
        Not a zip file, too many members, or a member whose header is not an array header.
    """
    path = Path(path)
    out = {}
    try:
        with zipfile.ZipFile(path) as zf:
            members = [i for i in zf.infolist() if i.filename.endswith(".npy")]
            if len(zf.infolist()) > _MAX_NPZ_MEMBERS:
                raise DatasetError(f"{path} holds {len(zf.infolist())} files; an NPZ data file holds 2 or 4 arrays "
                                   f"(at most {_MAX_NPZ_MEMBERS} files are read)")
            for info in members:
                with zf.open(info) as fh:
                    out[info.filename.removesuffix(".npy")] = _npy_header(fh)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DatasetError(f"{path} is not a readable .npz file ({exc}); write it with numpy.savez") from None
    return out


def _npy_header(fh) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return tuple(int(n) for n in shape), dtype


def _check_npz_headers(path: Path, headers: dict[str, tuple[tuple[int, ...], np.dtype]], names: tuple[str, ...],
                       limit: int) -> None:
    """Refuse object dtypes and arrays past ``limit`` bytes from the headers, before any array is read."""
    total = 0
    for name in names:
        shape, dtype = headers[name]
        if dtype.hasobject:
            raise DatasetError(f"{path} holds object arrays ('{name}'), which are not loaded (pickles run code); "
                               "save plain numeric/string arrays with np.savez")
        if dtype.kind not in "biufUS":
            raise DatasetError(f"{path}: '{name}' has dtype {dtype}; data arrays must be numbers or strings")
        total += int(np.prod(shape, dtype=object)) * max(dtype.itemsize, 1)  # object: no int64 overflow
    if total > limit:
        shapes = ", ".join(f"'{n}' {headers[n][0]} {headers[n][1]}" for n in names)
        raise DatasetError(f"{path} would take {total:,} bytes once loaded ({shapes}), larger than the {limit:,} bytes "
                           f"a data file may hold; use a subset, or raise ${MAX_DATA_BYTES_ENV} on the server")


def inspect_table(path: str | Path) -> list[str]:
    """Column names of a CSV/Parquet file (array names of an NPZ), read without loading the data."""
    path = _existing(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        import pyarrow.parquet as pq

        return list(pq.read_schema(path).names)
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            return list(f.files)
    return [str(c) for c in pd.read_csv(path, nrows=0).columns]


def encode_labels(y: np.ndarray, y_test: np.ndarray | None = None):
    """``(ids, ids_test, class_names, task)`` from raw label arrays.

    Float labels are regression targets and pass through; everything else is
    classification, with ids over the union of train and test labels.
    """
    both = y if y_test is None else np.concatenate([y, y_test])
    if both.dtype.kind == "f":
        return y, y_test, [], "regression"
    if both.dtype.kind in "iub":
        values = np.unique(both)
        _check_classes(values)
        if both.dtype.kind != "b" and np.array_equal(values, np.arange(len(values))):
            ids_test = None if y_test is None else y_test.astype(np.int64)
            return y.astype(np.int64), ids_test, [str(v) for v in values], "classification"
    else:
        both = both.astype(str)
        values = np.unique(both)
    _check_classes(values)
    ids = np.searchsorted(values, both).astype(np.int64)
    n = len(y)
    return ids[:n], None if y_test is None else ids[n:], [str(v) for v in values], "classification"


MAX_CLASSES = 10_000  # distinct labels of a classification data set (a model head of that many outputs)


def _check_classes(values: np.ndarray) -> None:
    """Refuse more than :data:`MAX_CLASSES` labels, or label texts longer than a name may be."""
    if len(values) > MAX_CLASSES:
        raise DatasetError(f"the labels take {len(values):,} distinct values; a classification data set has at most "
                           f"{MAX_CLASSES:,} classes. Are they regression targets? Store them as floats")
    if values.dtype.kind in "US" and len(values):
        longest = max(values.tolist(), key=len)
        if len(longest) > MAX_NAME_LENGTH:
            raise DatasetError(f"label {short_repr(longest)} has {len(longest)} characters; class names have at "
                               f"most {MAX_NAME_LENGTH}")


def load_npz(spec: DatasetSpec, *, standardize: bool = False) -> SourceData:
    """Arrays ``x, y`` or ``x_train, y_train, x_test, y_test`` from ``spec.path`` (no pickles)."""
    path = _file_for(spec, ".npz")
    limit = max_data_bytes()
    check_data_file_size(path, limit)
    headers = npz_headers(path)
    layout = next((keys for keys in _NPZ_LAYOUTS if set(keys) <= set(headers)), None)
    if layout is None:
        raise DatasetError(f"{path} must hold arrays 'x' and 'y', or 'x_train', 'y_train', 'x_test', 'y_test'; "
                           f"it holds {sorted(headers)}")
    _check_npz_headers(path, headers, layout, limit)
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: np.asarray(f[k]) for k in layout}
    except ValueError as exc:
        raise DatasetError(f"{path} holds object arrays, which are not loaded (pickles run code); "
                           f"save plain numeric/string arrays with np.savez ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same actionable message
        raise DatasetError(f"{path} is not a readable .npz file ({exc}); write it with numpy.savez") from None
    parts = [arrays[k] for k in layout]
    for xk, yk in zip(layout[::2], layout[1::2]):
        _check_npz_pair(path, xk, arrays[xk], yk, arrays[yk])
    if len(layout) == 4 and parts[0].shape[1:] != parts[2].shape[1:]:
        raise DatasetError(f"{path}: x_train samples have shape {parts[0].shape[1:]} but x_test samples "
                           f"{parts[2].shape[1:]}; both splits need the same sample shape")
    x, y = parts[0], parts[1]
    x_test, y_test = (parts[2], parts[3]) if len(layout) == 4 else (None, None)
    y, y_test, class_names, task = encode_labels(y, y_test)
    return SourceData(x=x.astype(np.float32), y=y, x_test=None if x_test is None else x_test.astype(np.float32),
                      y_test=y_test, task=task, class_names=class_names or None, standardize=standardize)


def load_csv(spec: DatasetSpec, *, standardize: bool = False, features: str = "") -> SourceData:
    """A CSV table from ``spec.path``; ``spec.label`` names the label column.

    ``features`` is an optional comma-separated list of feature columns (default: all others).
    """
    path = _file_for(spec, ".csv")
    check_data_file_size(path, max_data_bytes())
    try:
        table = pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - parser errors carry the line; keep them
        raise DatasetError(f"{path} could not be read as CSV: {exc}") from None
    return _from_table(path, table, spec.label, standardize, features)


def load_parquet(spec: DatasetSpec, *, standardize: bool = False, features: str = "") -> SourceData:
    """A Parquet table from ``spec.path``; ``spec.label`` names the label column.

    ``features`` is an optional comma-separated list of feature columns (default: all others).
    """
    path = _file_for(spec, ".parquet")
    _check_parquet_size(path, max_data_bytes())
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # noqa: BLE001
        raise DatasetError(f"{path} could not be read as Parquet: {exc}") from None
    return _from_table(path, table, spec.label, standardize, features)


def _check_parquet_size(path: Path, limit: int) -> None:
    """Refuse a Parquet file whose table would pass ``limit`` bytes (8 per cell), from its metadata."""
    import pyarrow.parquet as pq

    check_data_file_size(path, limit)
    try:
        meta = pq.read_metadata(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a bad footer
        raise DatasetError(f"{path} could not be read as Parquet: {exc}") from None
    cells = meta.num_rows * meta.num_columns
    if cells * 8 > limit:
        raise DatasetError(f"{path} holds {meta.num_rows:,} rows x {meta.num_columns} columns, "
                           f"about {8 * cells:,} bytes once loaded, larger than the {limit:,} bytes "
                           "a data file may hold; use a subset, "
                           f"or raise ${MAX_DATA_BYTES_ENV} on the server")


def _existing(path: str | Path) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise DatasetError(f"file {str(path)!r} does not exist (looked from {Path.cwd()}); check the path")
    return path


def _file_for(spec: DatasetSpec, suffix: str) -> Path:
    if spec.path is None:
        label = "" if suffix == ".npz" else ", label='target'"
        raise DatasetError(f"dataset {spec.name!r} reads a user file: set path, e.g. "
                           f"DatasetSpec(name={spec.name!r}, path='data{suffix}'{label})")
    return _existing(spec.path)


def _check_npz_pair(path: Path, xk: str, x: np.ndarray, yk: str, y: np.ndarray) -> None:
    if x.ndim < 2:
        raise DatasetError(f"{path}: '{xk}' must have shape (N, features...); got shape {x.shape}")
    if len(x) != len(y):
        raise DatasetError(f"{path}: '{xk}' has {len(x)} rows but '{yk}' has {len(y)}; "
                           "every sample needs exactly one label")
    if x.dtype.kind not in "biuf":
        raise DatasetError(f"{path}: '{xk}' must be numeric; got dtype {x.dtype}")
    bad = ~np.isfinite(x.reshape(len(x), -1)) if x.dtype.kind == "f" else np.zeros((len(x), 1), bool)
    if bad.any():
        raise DatasetError(f"{path}: '{xk}' has {int(bad.sum())} NaN/inf values in {int(bad.any(1).sum())} rows; "
                           "fill or drop those samples")
    if y.dtype.kind == "f":
        if y.ndim not in (1, 2) or not np.isfinite(y).all():
            raise DatasetError(f"{path}: '{yk}' regression targets must be finite with shape (N,) or (N, D); "
                               f"got shape {y.shape}, {int((~np.isfinite(y)).sum())} NaN/inf")
    elif y.ndim != 1 or y.dtype.kind not in "biuUS":
        raise DatasetError(f"{path}: '{yk}' class labels must be a 1-D array of integers or strings; "
                           f"got dtype {y.dtype}, shape {y.shape}")


def _from_table(path: Path, table: pd.DataFrame, label: str | None, standardize: bool, features: str) -> SourceData:
    columns = [str(c) for c in table.columns]
    table.columns = columns
    if label is None or label not in columns:
        what = "set label to the label column" if label is None else f"label column {label!r} is not in the table"
        raise DatasetError(f"{path}: {what}; columns are {columns}")
    chosen = [c.strip() for c in features.split(",") if c.strip()] or [c for c in columns if c != label]
    missing = [c for c in chosen if c not in columns]
    if missing or label in chosen or not chosen:
        raise DatasetError(f"{path}: features must be columns other than the label {label!r}; "
                           f"unknown {missing}, columns are {columns}")
    _check_table(path, table[chosen + [label]], label)
    y, _, class_names, task = encode_labels(_label_array(table[label]))
    return SourceData(x=table[chosen].to_numpy(dtype=np.float64), y=y, task=task, feature_names=chosen,
                      class_names=class_names or None, standardize=standardize)


def _label_array(column: pd.Series) -> np.ndarray:
    if pd.api.types.is_bool_dtype(column):
        return column.to_numpy(dtype=bool)
    if pd.api.types.is_integer_dtype(column):
        return column.to_numpy(dtype=np.int64)
    if pd.api.types.is_float_dtype(column):
        return column.to_numpy(dtype=np.float64)
    return column.astype(str).to_numpy(dtype=str)


def _check_table(path: Path, table: pd.DataFrame, label: str) -> None:
    if len(table) < 2:
        raise DatasetError(f"{path} has {len(table)} rows; at least 2 are needed for a train/test split")
    non_numeric = [c for c in table.columns if c != label and not (
        pd.api.types.is_numeric_dtype(table[c]) or pd.api.types.is_bool_dtype(table[c]))]
    if non_numeric:
        examples = ", ".join(f"{c}={table[c].iloc[0]!r}" for c in non_numeric[:3])
        raise DatasetError(f"{path}: feature columns {non_numeric} are not numeric (e.g. {examples}); "
                           "encode them as numbers (e.g. one-hot) or leave them out with the 'features' option")
    missing = table.isna()
    numeric = table.drop(columns=non_numeric).select_dtypes("number")
    missing[numeric.columns] = missing[numeric.columns].to_numpy() | ~np.isfinite(numeric.to_numpy(dtype=np.float64))
    if missing.any().any():
        per_column = missing.sum()
        detail = ", ".join(f"{c!r} ({n})" for c, n in per_column[per_column > 0].items())
        raise DatasetError(f"{path}: missing or infinite values in columns {detail}, {int(missing.any(axis=1).sum())} "
                           "rows in all; fill or drop those rows before loading")
