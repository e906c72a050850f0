"""Reports page sections: the draft (order, titles, notes), export, and the stored reports."""

from __future__ import annotations

import json
from collections.abc import Callable

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from engine.figures.export import StaticExportError, chromium_path, to_image
from engine.report import (
    DraftNotYours,
    Report,
    ReportDraft,
    ReportItem,
    build_report,
    markdown_to_html,
    render_html,
    save_report,
)

from . import reads
from .report_draft import draft_book, draft_name, load_draft, set_draft_name
from .services import Services, current_user
from .text import literal

__all__ = ["draft_editor", "export_panel", "stored_reports"]


# -- editing: every change is saved as the draft's newest state -------------------------------------------

_REFUSED = "report_draft_refused"  # why the last change was not saved (shown above the editor)


def _edit(svc: Services, change: Callable[[ReportDraft], None]) -> None:
    book = draft_book(svc)
    draft = book.load(draft_name())
    change(draft)
    try:
        book.save(draft, author=current_user())
    except DraftNotYours as exc:  # the widgets are disabled; this is a change sent anyway
        st.session_state[_REFUSED] = f"Not saved: {exc}."


def _set_text(svc: Services, field: str, widget: str) -> None:
    _edit(svc, lambda d: setattr(d, field, st.session_state[widget]))


def _set_item_text(svc: Services, item_id: str, field: str, widget: str) -> None:
    _edit(svc, lambda d: setattr(d.items[d.find(item_id)], field, st.session_state[widget]))


def _move(svc: Services, item_id: str, delta: int) -> None:
    def change(d: ReportDraft) -> None:
        i = d.find(item_id)
        j = min(max(i + delta, 0), len(d.items) - 1)
        d.items.insert(j, d.items.pop(i))

    _edit(svc, change)


def _remove(svc: Services, item_id: str) -> None:
    _edit(svc, lambda d: d.items.pop(d.find(item_id)))


def _bind(widget: str, value: str, owner: str) -> None:
    """Start ``widget`` at the stored ``value`` when it is new or belongs to another draft/item."""
    if st.session_state.get(f"{widget}__owner") != owner:
        st.session_state[widget] = value
        st.session_state[f"{widget}__owner"] = owner


def _pick_draft(svc: Services) -> str:
    names = draft_book(svc).list()["name"].tolist()
    current = draft_name()
    options = list(dict.fromkeys([current, *names]))
    if st.session_state.get("report_draft_pick") not in options:
        st.session_state["report_draft_pick"] = current
    choice = st.selectbox("Draft", options, key="report_draft_pick", accept_new_options=True,
                          help="Pick a draft, or type a new name to start one. Pins go to the draft chosen here.")
    if choice != current:
        set_draft_name(choice)
    return draft_name()


def _copy_name(svc: Services, name: str, me: str) -> str:
    """A name for ``me``'s copy of draft ``name`` that no draft has yet."""
    taken = set(draft_book(svc).list()["name"])
    base = f"{name} (copy by {me})"
    return next(n for n in (base, *(f"{base} {k}" for k in range(2, 10_000))) if n not in taken)


def _copy(svc: Services) -> None:
    """Save this draft's contents as a new draft of the current user's, and switch to it."""
    me, book = current_user(), draft_book(svc)
    source = book.load(draft_name())
    target = _copy_name(svc, source.name, me)
    book.save(source.model_copy(update={"name": target}), author=me)
    set_draft_name(target)
    st.session_state["report_draft_pick"] = target


def _not_yours(svc: Services, name: str) -> bool:
    """Say so, with a copy button, when this draft belongs to someone else; True then."""
    book = draft_book(svc)
    if book.may_write(name, current_user()):
        return False
    st.info(f"This draft belongs to **{literal(book.owner(name))}**: you can read and copy it, not change it.",
            icon=":material/lock:")
    st.button("Copy to my draft", key="report_copy", icon=":material/content_copy:", on_click=_copy, args=(svc,),
              help="Save a copy of this draft, title, notes and items, as a new draft of yours and switch to it")
    return True


def draft_editor(svc: Services) -> ReportDraft:
    """The draft's name, title, notes and items, each editable by its owner; returns the draft."""
    name = _pick_draft(svc)
    draft = load_draft(svc)
    refused = st.session_state.pop(_REFUSED, None)
    if refused:
        st.error(refused, icon=":material/lock:")
    locked = _not_yours(svc, name)
    _bind("report_title", draft.title, name)
    _bind("report_notes", draft.notes, name)
    st.text_input("Title", key="report_title", on_change=_set_text, args=(svc, "title", "report_title"),
                  disabled=locked)
    st.text_area("Notes (Markdown)", key="report_notes", height=120, on_change=_set_text, disabled=locked,
                 args=(svc, "notes", "report_notes"),
                 help="Shown under the title; raw HTML is shown as text and images are not loaded.")
    if draft.notes.strip():
        with st.container(border=True, key="report_notes_preview"):
            # the export's renderer: Markdown with raw HTML shown as text and images off (no fetches)
            st.html(markdown_to_html(draft.notes))
    if not draft.items:
        st.info("Nothing pinned to this draft yet. Press **Add to report** under a figure on any page: the "
                "figure, its settings and the checkpoints behind it land here, ready to order, annotate and "
                "export as one HTML file that opens offline.", icon=":material/push_pin:")
        return draft
    st.caption(f"{len(draft.items)} pinned item{'s' * (len(draft.items) != 1)} · changes are saved as you make them")
    for n, item in enumerate(draft.items):
        _item_card(svc, draft, n, item, locked)
    return draft


def _item_card(svc: Services, draft: ReportDraft, n: int, item: ReportItem, locked: bool) -> None:
    iid = item.item_id
    with st.container(border=True, key=f"ri_{iid}"):
        cols = st.columns([12, 1, 1, 1], vertical_alignment="bottom")
        _bind(f"ri_title_{iid}", item.title, f"{draft.name}/{iid}")
        cols[0].text_input(f"Item {n + 1}", key=f"ri_title_{iid}", on_change=_set_item_text,
                           args=(svc, iid, "title", f"ri_title_{iid}"), disabled=locked)
        cols[1].button("", key=f"ri_up_{iid}", icon=":material/arrow_upward:", help="Move up",
                       disabled=locked or n == 0, on_click=_move, args=(svc, iid, -1))
        cols[2].button("", key=f"ri_down_{iid}", icon=":material/arrow_downward:", help="Move down",
                       disabled=locked or n == len(draft.items) - 1, on_click=_move, args=(svc, iid, 1))
        cols[3].button("", key=f"ri_del_{iid}", icon=":material/delete:", help="Remove from the draft",
                       disabled=locked, on_click=_remove, args=(svc, iid))
        if item.figure is not None:
            st.plotly_chart(go.Figure(item.figure), key=f"ri_fig_{iid}")
        else:
            st.dataframe(pd.DataFrame(item.table["rows"], columns=item.table["columns"]), hide_index=True,
                         key=f"ri_table_{iid}")
        _bind(f"ri_note_{iid}", item.note, f"{draft.name}/{iid}")
        st.text_area("Note (Markdown)", key=f"ri_note_{iid}", height=68, on_change=_set_item_text,
                     args=(svc, iid, "note", f"ri_note_{iid}"), disabled=locked)
        st.caption(_sources(item))
        if item.figure is not None:
            _image_buttons(item)


def _sources(item: ReportItem) -> str:
    parts = [f"from {item.source}" if item.source else "", f"by {item.pinned_by}" if item.pinned_by else "",
             f"at {item.pinned_at}" if item.pinned_at else ""]
    text = "Pinned " + " ".join(p for p in parts if p)
    if item.params:
        text += " · settings " + json.dumps(item.params, sort_keys=True, default=str)[:300]
    if item.checkpoint_ids:
        text += f" · {len(item.checkpoint_ids)} checkpoint{'s' * (len(item.checkpoint_ids) != 1)}"
    return literal(text)


def _image_buttons(item: ReportItem) -> None:
    if chromium_path() is None:
        return  # no browser to render with: the figure's own camera button still saves a PNG
    stem = "".join(c if c.isalnum() else "-" for c in item.title.lower()).strip("-")[:40] or "figure"
    cols = st.columns([1, 1, 6])
    for col, fmt, mime in ((cols[0], "png", "image/png"), (cols[1], "svg", "image/svg+xml")):
        col.download_button(fmt.upper(), data=_render_image(item.figure, fmt), file_name=f"{stem}.{fmt}", mime=mime,
                            key=f"ri_{fmt}_{item.item_id}", icon=":material/image:", on_click="ignore",
                            help=f"A static {fmt.upper()} made by kaleido with the system Chromium (a few seconds)")


def _render_image(figure: dict, fmt: str) -> Callable[[], bytes]:
    def render() -> bytes:  # runs when clicked, off the script thread
        try:
            return to_image(figure, fmt, scale=2 if fmt == "png" else 1)
        except StaticExportError as exc:
            return str(exc).encode()

    return render


# -- export and stored reports ------------------------------------------------------------------------------

def _html_of(svc: Services, report_id: str) -> Callable[[], str]:
    return lambda: render_html(reads.stored_report(svc, report_id))


def _file_name(title: str) -> str:
    return ("".join(c if c.isalnum() else "-" for c in title.lower()).strip("-")[:60] or "report") + ".html"


def export_panel(svc: Services, draft: ReportDraft) -> None:
    """Save the draft as a stored report (with its provenance) and download it as one HTML file."""
    st.subheader("Export")
    c1, c2 = st.columns([2, 3], vertical_alignment="bottom")
    signed_in = svc.access.enabled  # with sign-in on, a report's author is who saved it
    author = c1.text_input("Author", value=current_user(), key="report_author", disabled=signed_in)
    author = current_user() if signed_in else author
    if c2.button("Save report", key="report_save", type="primary", icon=":material/save:",
                 help="Freeze the draft with its provenance (ids, configs, versions, time, author) as a stored report"):
        report = build_report(svc.store, draft, author=author.strip() or None)
        st.session_state["report_saved"] = (save_report(svc.store, report), report.title)
    saved = st.session_state.get("report_saved")
    if saved:
        report_id, title = saved
        st.success(f"Saved the report '{literal(title)}' ({literal(report_id)}). It is listed under *Stored reports*.",
                   icon=":material/check_circle:")
        st.download_button("Download HTML", data=_html_of(svc, report_id), file_name=_file_name(title),
                           mime="text/html", key="report_download_saved", icon=":material/download:",
                           on_click="ignore", type="primary")


def _reopen(svc: Services, report: Report) -> None:
    for key in [k for k in st.session_state if str(k).endswith("__owner")]:
        del st.session_state[key]  # the title, notes and item widgets start again from the stored values
    book = draft_book(svc)
    try:
        book.save(ReportDraft(name=draft_name(), title=report.title, notes=report.notes, items=report.items),
                  author=current_user())
    except DraftNotYours as exc:
        st.session_state[_REFUSED] = f"Not reopened: {exc}."


def stored_reports(svc: Services) -> None:
    """Stored reports with author and date; download one again (same figures), or reopen it as the draft."""
    reports = reads.stored_reports(svc)
    if reports.empty:
        st.info("No stored reports yet. Pin figures, then **Save report** on the Draft tab.")
        return
    table = reports.rename(columns={"title": "Title", "author": "Author", "created_at": "Saved (UTC)",
                                    "report_id": "Id"})
    st.dataframe(table[["Title", "Author", "Saved (UTC)", "Id"]], hide_index=True, key="report_table")
    labels = {r.report_id: f"{r.title} — {r.author or 'unknown'}, {r.created_at:%Y-%m-%d %H:%M}"
              for r in reports.itertuples()}
    report_id = st.selectbox("Report", list(labels), format_func=labels.get, key="report_pick")
    report = reads.stored_report(svc, report_id)
    st.caption(f"{len(report.figures)} figures, {len(report.items) - len(report.figures)} tables · "
               f"Zooscope {literal(report.provenance.get('zooscope_version', '?'))} · made "
               f"{literal(report.created_at)}")
    c1, c2 = st.columns([1, 3])
    c1.download_button("Download HTML", data=_html_of(svc, report_id), file_name=_file_name(report.title),
                       mime="text/html", key="report_download", icon=":material/download:", on_click="ignore")
    c2.button("Reopen as the current draft", key="report_reopen", icon=":material/edit:", on_click=_reopen,
              args=(svc, report), help=f"Replace the items of the draft '{literal(draft_name())}' with this report's")
