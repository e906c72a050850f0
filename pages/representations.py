"""Representations page: similarity across layers, models and training; projections; collapse; dimension."""

import streamlit as st

from pages.ui.pickers import pick_run, pick_runs
from pages.ui.representations_views import (
    collapse_tab,
    dimension_tab,
    model_vs_model_tab,
    projection_tab,
    training_tab,
)
from pages.ui.sidebar import page_start

svc, zoo_id = page_start("Representations")
tabs = st.tabs(["Model vs model", "Through training", "Projection", "Neural collapse", "Dimension & neurons"])
with tabs[0]:
    runs = pick_runs(svc, zoo_id, label="Two runs (A, B)", max_runs=2)
    model_vs_model_tab(svc, runs)
run_id = None
with tabs[1]:
    run_id = pick_run(svc, zoo_id, key="run")
    if run_id is None:
        st.info("No finished runs yet.")
    else:
        training_tab(svc, run_id)
for tab, view in ((tabs[2], projection_tab), (tabs[3], collapse_tab), (tabs[4], dimension_tab)):
    with tab:
        if run_id is None:
            st.info("No finished runs yet.")
        else:
            st.caption("Run: as chosen in *Through training*.")
            view(svc, run_id, runs)
