"""Reports page: the draft of pinned figures (order, titles, Markdown notes), export to one offline
HTML file with provenance, and the stored reports with author and date."""

import streamlit as st

from pages.ui.report_views import draft_editor, export_panel, stored_reports
from pages.ui.services import get_services
from pages.ui.sidebar import sidebar

svc = get_services()
sidebar(svc)
st.title("Reports")
st.caption("Pin figures with **Add to report** on any page, arrange them here, and save them as one HTML file "
           "that opens offline: every figure interactive, with the ids, configs and versions behind it.")
draft_tab, stored_tab = st.tabs(["Draft", "Stored reports"])
with draft_tab:
    draft = draft_editor(svc)
    if draft.items:
        export_panel(svc, draft)
with stored_tab:
    stored_reports(svc)
