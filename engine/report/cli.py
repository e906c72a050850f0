"""``zooscope report``: export a draft or a stored report as one offline HTML file."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .build import build_report, export_images, load_report, save_report, write_html
from .drafts import DraftBook, list_stored_reports

__all__ = ["add_report_arguments", "report_command"]


def add_report_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options of ``zooscope report`` (see :func:`report_command`)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--from-draft", metavar="NAME", help="store and export the report draft NAME "
                        "(the figures pinned with 'Add to report' in the dashboard)")
    source.add_argument("--id", metavar="REPORT_ID", help="export a stored report again (same figures)")
    source.add_argument("--list", action="store_true", help="list stored reports and drafts")
    parser.add_argument("--out", metavar="FILE", help="the HTML file to write, e.g. report.html")
    parser.add_argument("--title", help="report title (default: the draft's)")
    parser.add_argument("--author", default=os.environ.get("USER", "local"))
    parser.add_argument("--images", metavar="DIR", help="also write every figure as a static image into DIR "
                        "(kaleido with the system Chromium)")
    parser.add_argument("--image-format", choices=["png", "svg", "pdf"], default="png")
    return parser


def report_command(args: argparse.Namespace, store_path: Path) -> int:
    """Run ``zooscope report``; returns the exit status.

    ``--from-draft NAME`` needs to own the store (it records the report); ``--id`` and
    ``--list`` only read it. While the dashboard owns the store, use its Reports page.
    """
    import store

    if not args.list and not args.out:
        raise ValueError("--out FILE is required, e.g. `zooscope report --from-draft NAME --out report.html`")
    try:
        opened = store.open_store(store_path, owner=bool(args.from_draft))
    except store.StoreBusyError as exc:
        raise store.StoreBusyError(f"{exc}\nWhile the dashboard runs, export reports from its Reports page "
                                   "(the same file), or stop it and run this command again.",
                                   path=exc.path, holder=exc.holder) from None
    with opened as st:
        if args.list:
            return _list(st)
        if args.from_draft:
            report = _from_draft(st, args)
            report_id = save_report(st, report)
        else:
            report_id, report = args.id, load_report(st, args.id)
    path = write_html(report, args.out)
    print(f"report {report_id} {report.title!r}: {len(report.figures)} figures, "
          f"{len(report.items) - len(report.figures)} tables -> {path} ({path.stat().st_size / 1e6:.1f} MB)")
    if args.images:
        written = export_images(report, args.images, args.image_format)
        print(f"{len(written)} {args.image_format.upper()} images -> {args.images}")
    return 0


def _from_draft(st, args: argparse.Namespace):
    book = DraftBook(st)
    draft = book.load(args.from_draft)
    if not draft.items:
        names = book.list()["name"].tolist()
        known = f"drafts in this store: {names}" if names else "this store has no drafts yet"
        raise ValueError(f"draft {args.from_draft!r} has nothing pinned ({known}); pin figures with "
                         "'Add to report' on any dashboard page")
    return build_report(st, draft, author=args.author, title=args.title)


def _list(st) -> int:
    reports = list_stored_reports(st)
    drafts = DraftBook(st).list()
    print("Stored reports:" if len(reports) else "No stored reports.")
    for row in reports.itertuples():
        print(f"  {row.report_id}  {row.created_at:%Y-%m-%d %H:%M}  {row.author or '-':<12} {row.title}")
    print("Drafts:" if len(drafts) else "No drafts.")
    for row in drafts.itertuples():
        print(f"  {row.name:<24} {row.author or '-':<12} saved {row.updated_at:%Y-%m-%d %H:%M}")
    return 0
