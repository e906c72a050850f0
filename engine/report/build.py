"""From a draft to a stored report and its HTML file (and back, for re-export)."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from typing import Any

from .drafts import is_stored_report
from .html import render_html
from .model import Report, ReportDraft, utc_stamp
from .provenance import collect_provenance

__all__ = ["build_report", "export_images", "load_report", "save_report", "write_html"]


def build_report(store: Any, draft: ReportDraft, *, author: str | None, title: str | None = None,
                 now: datetime | None = None) -> Report:
    """Freeze ``draft`` into a :class:`Report`, with the provenance of its items read from ``store``."""
    if not draft.items:
        raise ValueError(f"draft {draft.name!r} has nothing pinned; pin figures with 'Add to report' on any "
                         "dashboard page first")
    return Report(title=title or draft.title, notes=draft.notes, author=author, created_at=utc_stamp(now),
                  draft=draft.name, items=[item.model_copy(deep=True) for item in draft.items],
                  provenance=collect_provenance(store, draft.items, author=author, now=now))


def save_report(store: Any, report: Report) -> str:
    """Store ``report`` in the ``report`` table; returns its ``report_id``."""
    return store.add_report(report.title, report.model_dump(mode="json"), author=report.author)


def load_report(store: Any, report_id: str) -> Report:
    """A stored report, exactly as it was saved (figures, notes and provenance)."""
    if not is_stored_report(report_id):
        raise ValueError(f"{report_id!r} is a draft's row, not a report; export the draft with "
                         "`zooscope report --from-draft NAME` instead")
    return Report.from_body(store.get_report(report_id)["body"])


def write_html(report: Report, path: str | os.PathLike[str]) -> Path:
    """Write the report's HTML to ``path`` (atomically: a reader never sees half a file)."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise ValueError(f"--out must be a file name, e.g. {path / 'report.html'}; {path} is a folder")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(render_html(report), encoding="utf-8")
    tmp.replace(path)
    return path


def export_images(report: Report, directory: str | os.PathLike[str], fmt: str = "png",
                  scale: float = 1.0) -> list[Path]:
    """Every figure of ``report`` as ``<directory>/<nn>-<slug>.<fmt>`` through kaleido (system Chromium)."""
    from engine.figures.export import to_images

    figures = [(n, item) for n, item in enumerate(report.items, 1) if item.figure is not None]
    images = to_images([item.figure for _, item in figures], fmt, scale=scale)
    out = Path(directory).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for (n, item), data in zip(figures, images):
        path = out / f"{n:02d}-{_slug(item.title)}.{fmt}"
        path.write_bytes(data)
        paths.append(path)
    return paths


def _slug(text: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
    return "-".join(part for part in slug.split("-") if part)[:48] or "figure"
