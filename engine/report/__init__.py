"""Reports: pinned figures and tables with notes and provenance, exported as one offline HTML file.

``figure_item`` pins a figure, a :class:`DraftBook` keeps named drafts in the store,
``build_report`` freezes a draft with its provenance, ``save_report``/``load_report``
store and fetch it, and ``render_html``/``write_html`` make the self-contained file.
This package reads and writes the store; the HTML renderer itself touches nothing but
its argument.
"""

from .build import build_report, export_images, load_report, save_report, write_html
from .cli import add_report_arguments, report_command
from .drafts import DRAFT_PREFIX, PIN_PREFIX, DraftBook, DraftNotYours, is_stored_report, list_stored_reports
from .html import markdown_to_html, render_html
from .model import REPORT_FORMAT, Report, ReportDraft, ReportItem, figure_item, table_item, utc_stamp
from .provenance import collect_provenance, environment

__all__ = [
    "DRAFT_PREFIX",
    "PIN_PREFIX",
    "REPORT_FORMAT",
    "DraftBook",
    "DraftNotYours",
    "Report",
    "ReportDraft",
    "ReportItem",
    "add_report_arguments",
    "build_report",
    "collect_provenance",
    "environment",
    "export_images",
    "figure_item",
    "is_stored_report",
    "list_stored_reports",
    "load_report",
    "markdown_to_html",
    "render_html",
    "report_command",
    "save_report",
    "table_item",
    "utc_stamp",
    "write_html",
]
