"""User data files past the size limit are refused before they are read whole (issue 14, part 3)."""

import tracemalloc
import zipfile

import numpy as np
import pandas as pd
import pytest

from engine.config import DatasetSpec
from engine.data import DatasetError, load
from engine.data.files import DEFAULT_MAX_DATA_BYTES, MAX_DATA_BYTES_ENV, npz_headers

CHUNK = 1 << 20


def _npz_member(zf: zipfile.ZipFile, name: str, shape: tuple[int, ...], dtype: str, data_bytes: int) -> None:
    """Write ``name.npy`` with a header for ``shape``/``dtype`` and ``data_bytes`` zero bytes, a chunk at a time."""
    with zf.open(f"{name}.npy", "w", force_zip64=True) as fh:
        np.lib.format.write_array_header_1_0(fh, {"descr": np.dtype(dtype).str, "fortran_order": False,
                                                  "shape": shape})
        zero = bytes(CHUNK)
        for start in range(0, data_bytes, CHUNK):
            fh.write(zero[: min(CHUNK, data_bytes - start)])


def _bomb(path, rows: int, *, data_bytes: int | None = None):
    """An NPZ whose ``x`` is ``rows x 1`` float64 zeros (deflated to ~1/1000 of that); ``y`` is small."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        _npz_member(zf, "x", (rows, 1), "<f8", rows * 8 if data_bytes is None else data_bytes)
        _npz_member(zf, "y", (rows,), "<i8", 8)
    return path


def test_an_npz_bomb_is_refused_from_its_headers_without_decompressing(tmp_path, monkeypatch):
    monkeypatch.setenv(MAX_DATA_BYTES_ENV, str(16 << 20))
    path = _bomb(tmp_path / "bomb.npz", rows=8 << 20)  # x and y: 64 MiB each once loaded
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()  # NumPy reports its array allocations to tracemalloc
    try:
        with pytest.raises(DatasetError, match=r"bomb\.npz would take 134,217,728 bytes once loaded \('x' \(8388608, "
                                               r"1\) float64, 'y' \(8388608,\) int64\), larger than the 16,777,216 "
                                               r"bytes a data file may hold; use a subset, or raise "
                                               r"\$ZOOSCOPE_MAX_DATA_BYTES"):
            load(DatasetSpec(name="npz", path=str(path)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20


def test_the_default_limit_refuses_a_4_gib_array_declared_in_a_small_file(tmp_path):
    # The headers declare 8 GiB (x: 4 GiB); only x's first megabyte is written: reading the header must be enough.
    path = _bomb(tmp_path / "big.npz", rows=1 << 29, data_bytes=CHUNK)
    assert npz_headers(path)["x"] == ((1 << 29, 1), np.dtype("float64"))
    assert DEFAULT_MAX_DATA_BYTES == 2 << 30
    with pytest.raises(DatasetError, match=r"big\.npz would take 8,589,934,592 bytes once loaded .* larger than the "
                                           r"2,147,483,648 bytes"):
        load(DatasetSpec(name="npz", path=str(path)))


def test_npz_object_and_record_dtypes_are_refused_from_the_header(tmp_path):
    path = tmp_path / "rec.npz"
    np.savez(path, x=np.zeros((4, 2), dtype=[("a", "<f4"), ("b", "<i4")]), y=np.zeros(4))
    with pytest.raises(DatasetError, match=r"rec\.npz: 'x' has dtype \[\('a', '<f4'\), \('b', '<i4'\)\]; data arrays "
                                           r"must be numbers or strings"):
        load(DatasetSpec(name="npz", path=str(path)))


def test_members_outside_the_layout_are_never_read(tmp_path):
    """A non-array member (which np.load would read whole) is left unread."""
    path = tmp_path / "extra.npz"
    np.savez(path, x=np.ones((6, 2)), y=np.arange(6) % 2)
    with zipfile.ZipFile(path, "a", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf, \
            zf.open("notes.txt", "w") as fh:
        for _ in range(64):
            fh.write(bytes(CHUNK))
    tracemalloc.start()
    try:
        ds = load(DatasetSpec(name="npz", path=str(path)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(ds.y_train) + len(ds.y_test) == 6
    assert peak < 16 << 20  # the 64 MiB member was not read


def test_csv_past_the_limit_is_refused_unread(tmp_path, monkeypatch):
    path = tmp_path / "big.csv"
    pd.DataFrame({"a": np.arange(500), "label": np.arange(500) % 2}).to_csv(path, index=False)
    monkeypatch.setenv(MAX_DATA_BYTES_ENV, "1000")
    with pytest.raises(DatasetError, match=r"data file .*big\.csv has \d{1},\d{3} bytes; at most 1,000 are read; "
                                           r"use a subset, or raise \$ZOOSCOPE_MAX_DATA_BYTES on the server"):
        load(DatasetSpec(name="csv", path=str(path), label="label"))


def test_parquet_rows_are_counted_from_the_metadata(tmp_path, monkeypatch):
    path = tmp_path / "many.parquet"
    pd.DataFrame({"a": np.zeros(1_000_000), "label": np.zeros(1_000_000, dtype=np.int64)}).to_parquet(path)
    assert path.stat().st_size < 1 << 20  # constant columns compress to almost nothing
    monkeypatch.setenv(MAX_DATA_BYTES_ENV, str(1 << 20))
    with pytest.raises(DatasetError, match=r"many\.parquet holds 1,000,000 rows x 2 columns, about 16,000,000 bytes "
                                           r"once loaded, larger than the 1,048,576 bytes"):
        load(DatasetSpec(name="parquet", path=str(path), label="label"))


@pytest.mark.parametrize("value", ["lots", "0", "-5"])
def test_a_bad_limit_setting_is_explained(tmp_path, monkeypatch, value):
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((6, 2)), y=np.arange(6) % 2)
    monkeypatch.setenv(MAX_DATA_BYTES_ENV, value)
    with pytest.raises(DatasetError, match=r"\$ZOOSCOPE_MAX_DATA_BYTES must be a positive whole number of bytes"):
        load(DatasetSpec(name="npz", path=str(path)))
