"""Zoo page: create and follow zoos, browse runs, training curves and phase diagrams."""

import streamlit as st

from pages.ui.services import cached_zoos, get_services
from pages.ui.sidebar import sidebar
from pages.ui.text import literal
from pages.ui.zoo_form import create_zoo_form, import_form
from pages.ui.zoo_views import curves_section, first_run_panel, live_runs, phase_section, runs_section

svc = get_services()
zoo_id = sidebar(svc)
zoos = cached_zoos(svc)

if zoo_id is None:
    first_run_panel(svc)
    with st.expander("Create a zoo", expanded=False):
        create_zoo_form(svc)
    st.stop()

zoo = zoos.set_index("zoo_id").loc[zoo_id]
st.title(f"Zoo · {literal(zoo['name'])}")
live_runs(svc, zoo_id)
runs, selected = runs_section(svc, zoo_id)

tab_curves, tab_phase, tab_new, tab_import = st.tabs(["Training curves", "Phase diagram", "New zoo", "Import"])
with tab_curves:
    if not runs.empty:
        curves_section(svc, runs, selected)
with tab_phase:
    if not runs.empty:
        phase_section(runs)
with tab_new:
    create_zoo_form(svc)
with tab_import:
    import_form(svc)
