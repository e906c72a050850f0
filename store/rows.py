"""Turning Python values into catalog rows and back.

Callers pass plain dicts. A JSON column ``x_json`` may be given either as text
under ``x_json`` or as any JSON-able value under ``x`` (``config={...}`` fills
``config_json``). Rows read back carry the parsed value under ``x``.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any

from store.schema import COLUMNS

__all__ = ["new_id", "utcnow", "to_json", "canonical_json", "encode_row", "encode_rows", "decode_row"]


def new_id() -> str:
    """A fresh random row id (uuid4 text)."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    """The current time as a naive UTC datetime (how the catalog stores times)."""
    return datetime.now(UTC).replace(tzinfo=None)


def _to_naive_utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value
    return value.astimezone(UTC).replace(tzinfo=None)


def _json_default(value: Any) -> Any:
    # numpy scalars/arrays and torch scalars expose tolist()/item(); paths become text.
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, datetime):
        return _to_naive_utc(value).isoformat()
    for method in ("tolist", "item"):
        if hasattr(value, method):
            return getattr(value, method)()
    if hasattr(value, "model_dump"):  # pydantic models
        return value.model_dump(mode="json")
    raise TypeError(
        f"cannot store a value of type {type(value).__name__} as JSON ({value!r:.80}); "
        "pass plain numbers, strings, lists and dicts"
    )


def to_json(value: Any) -> str:
    """Serialise a JSON-able value (numpy/torch scalars and pydantic models allowed)."""
    return json.dumps(value, default=_json_default)


def canonical_json(value: Any) -> str:
    """Serialise with sorted keys and no whitespace, so equal values give equal text."""
    return json.dumps(value, default=_json_default, sort_keys=True, separators=(",", ":"))


def _check_table(table: str) -> tuple[str, ...]:
    try:
        return COLUMNS[table]
    except KeyError:
        raise ValueError(f"unknown catalog table {table!r}; tables are {sorted(COLUMNS)}") from None


def encode_row(table: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """Map caller fields onto ``table``'s columns.

    Parameters
    ----------
    table : str
        A catalog table name.
    fields : Mapping
        Column values; ``x=value`` fills a JSON column ``x_json``.

    Returns
    -------
    dict
        Column name -> value ready for DuckDB (JSON columns as text, datetimes
        as naive UTC, non-finite floats kept as floats).

    Raises
    ------
    ValueError
        If a field is not a column of ``table``.
    """
    columns = _check_table(table)
    row: dict[str, Any] = {}
    for name, value in fields.items():
        if name in columns:
            column = name
        elif f"{name}_json" in columns:
            column = f"{name}_json"
        else:
            raise ValueError(
                f"{table} has no column {name!r}; columns are {list(columns)} "
                "(JSON columns also accept the name without '_json')"
            )
        if column.endswith("_json") and value is not None and not isinstance(value, str):
            value = to_json(value)
        elif isinstance(value, datetime):
            value = _to_naive_utc(value)
        elif hasattr(value, "item") and not isinstance(value, (str, bytes)):
            value = value.item()  # numpy / torch scalar
        row[column] = value
    return row


def _parse_json(text: Any) -> Any:
    if text is None or (isinstance(text, float) and math.isnan(text)):
        return None
    return json.loads(text)


def decode_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Replace each ``x_json`` text column by its parsed value under ``x``."""
    out: dict[str, Any] = {}
    for name, value in row.items():
        if name.endswith("_json"):
            out[name[: -len("_json")]] = _parse_json(value)
        else:
            out[name] = value
    return out


def encode_rows(table: str, rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """:func:`encode_row` over many rows; every row gets every column any row has (None if absent)."""
    encoded = [encode_row(table, row) for row in rows]
    columns = list(dict.fromkeys(column for row in encoded for column in row))
    return [{column: row.get(column) for column in columns} for row in encoded]
