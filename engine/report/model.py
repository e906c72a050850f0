"""What a report holds: pinned items (figures, tables), a draft of them, and a finished report.

Everything here is plain JSON once dumped, so a draft or a report is stored as one
catalog row and rendered again later without the objects that made it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["REPORT_FORMAT", "Report", "ReportDraft", "ReportItem", "figure_item", "table_item", "utc_stamp"]

REPORT_FORMAT = 1  # bump when the stored body changes shape; older bodies are read by Report.from_body


def utc_stamp(when: datetime | None = None) -> str:
    """An ISO-8601 UTC time stamp to the second, e.g. ``2026-05-01T12:00:00Z``."""
    when = when or datetime.now(UTC)
    if when.tzinfo is not None:
        when = when.astimezone(UTC)
    return when.replace(tzinfo=None, microsecond=0).isoformat() + "Z"


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


class ReportItem(BaseModel):
    """One pinned figure or table, with the parameters and ids that produced it."""

    model_config = ConfigDict(extra="forbid")

    item_id: str = ""                 # content hash of what was pinned; filled in when empty
    kind: Literal["figure", "table"]
    title: str
    note: str = ""                    # Markdown, shown under the title
    figure: dict[str, Any] | None = None   # Plotly figure JSON, exactly as Figure.to_json() wrote it
    table: dict[str, Any] | None = None    # {"columns": [str], "rows": [[value]]}
    params: dict[str, Any] = Field(default_factory=dict)
    checkpoint_ids: list[str] = Field(default_factory=list)
    run_ids: list[str] = Field(default_factory=list)
    probe_keys: list[str] = Field(default_factory=list)
    source: str | None = None         # the page (or script) it was pinned from
    pinned_at: str | None = None      # utc_stamp()
    pinned_by: str | None = None

    @model_validator(mode="after")
    def _payload_matches_kind(self) -> ReportItem:
        if (self.kind == "figure") != (self.figure is not None) or (self.kind == "table") != (self.table is not None):
            raise ValueError(f"a {self.kind!r} item needs exactly its '{self.kind}' payload; "
                             f"got figure={self.figure is not None}, table={self.table is not None}")
        if not self.item_id:
            self.item_id = self.content_hash()
        return self

    def content_hash(self) -> str:
        """Hash of the payload, parameters and ids (not title/note): pinning the same view twice gives one id."""
        payload = {"kind": self.kind, "figure": self.figure, "table": self.table, "params": self.params,
                   "checkpoint_ids": self.checkpoint_ids, "run_ids": self.run_ids, "probe_keys": self.probe_keys}
        return hashlib.sha256(_canonical(payload).encode()).hexdigest()[:20]


class ReportDraft(BaseModel):
    """A named, ordered collection of pinned items with a title and Markdown notes."""

    model_config = ConfigDict(extra="forbid")

    name: str
    title: str = "Untitled report"
    notes: str = ""
    items: list[ReportItem] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name_not_blank(cls, name: str) -> str:
        if not name.strip():
            raise ValueError(f"a draft needs a non-blank name; got {name!r}")
        return name.strip()

    def find(self, item_id: str) -> int:
        """Position of the item ``item_id``; raises KeyError naming the ids there are."""
        for i, item in enumerate(self.items):
            if item.item_id == item_id:
                return i
        raise KeyError(f"no item {item_id!r} in draft {self.name!r}; it holds {[i.item_id for i in self.items]}")


class Report(BaseModel):
    """A finished report: the draft's content frozen together with its provenance."""

    model_config = ConfigDict(extra="forbid")

    format: int = REPORT_FORMAT
    title: str
    notes: str = ""
    author: str | None = None
    created_at: str = Field(default_factory=utc_stamp)
    draft: str | None = None          # the draft it was made from
    items: list[ReportItem] = Field(default_factory=list)
    provenance: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> Report:
        """A report from a stored ``report.body``; refuses bodies written by a newer Zooscope."""
        version = body.get("format")
        if not isinstance(version, int) or version > REPORT_FORMAT:
            raise ValueError(f"report body has format {version!r}; this Zooscope reads formats up to "
                             f"{REPORT_FORMAT}. Upgrade Zooscope to export it")
        return cls.model_validate(body)

    @property
    def figures(self) -> list[dict[str, Any]]:
        """The figure JSON of every figure item, in order."""
        return [item.figure for item in self.items if item.figure is not None]


def figure_item(fig: Any, *, title: str, params: dict[str, Any] | None = None,
                checkpoint_ids: list[str] | None = None, run_ids: list[str] | None = None,
                probe_keys: list[str] | None = None, note: str = "", source: str | None = None,
                pinned_by: str | None = None) -> ReportItem:
    """Pin a Plotly figure (a ``go.Figure`` or its dict) with what produced it.

    The figure is stored as the JSON Plotly writes (``Figure.to_json``: arrays as
    typed base64), so the report draws exactly the figure the page showed.
    """
    import plotly.io as pio

    figure = json.loads(pio.to_json(fig, validate=False))
    if not isinstance(figure, dict) or "data" not in figure:
        raise ValueError(f"figure_item needs a plotly Figure or a figure dict with 'data'; got {type(fig).__name__}")
    return ReportItem(kind="figure", title=title, note=note, figure=figure, params=_jsonable(params or {}),
                      checkpoint_ids=list(checkpoint_ids or []), run_ids=list(run_ids or []),
                      probe_keys=list(probe_keys or []), source=source, pinned_at=utc_stamp(), pinned_by=pinned_by)


def table_item(df: Any, *, title: str, params: dict[str, Any] | None = None,
               checkpoint_ids: list[str] | None = None, run_ids: list[str] | None = None,
               note: str = "", source: str | None = None, pinned_by: str | None = None,
               max_rows: int = 500) -> ReportItem:
    """Pin a table (a pandas DataFrame); at most ``max_rows`` rows are kept, and the cut is noted."""
    if len(df) > max_rows:
        note = (note + "\n\n" if note else "") + f"*First {max_rows} of {len(df)} rows.*"
        df = df.head(max_rows)
    table = {"columns": [str(c) for c in df.columns], "rows": json.loads(df.to_json(orient="values"))}
    return ReportItem(kind="table", title=title, note=note, table=table, params=_jsonable(params or {}),
                      checkpoint_ids=list(checkpoint_ids or []), run_ids=list(run_ids or []),
                      source=source, pinned_at=utc_stamp(), pinned_by=pinned_by)


def _jsonable(value: dict[str, Any]) -> dict[str, Any]:
    # numpy scalars, tuples and the like become plain JSON values once, at the boundary.
    def default(v: Any) -> Any:
        for method in ("tolist", "item", "model_dump"):
            if hasattr(v, method):
                return getattr(v, method)()
        return str(v)

    return json.loads(json.dumps(value, default=default))
