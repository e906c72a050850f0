"""Connectivity page: paths between solutions before/after alignment, layer-wise barriers, basins, merging."""

import streamlit as st

from pages.ui.connectivity_views import (
    instability_tab,
    layerwise_tab,
    matrix_tab,
    merge_tab,
    paths_tab,
    singular_tab,
)
from pages.ui.pickers import pick_runs
from pages.ui.sidebar import page_start

svc, zoo_id = page_start("Mode connectivity")
runs = pick_runs(svc, zoo_id, label="Two runs (A, B) of the same architecture", max_runs=2)
tabs = st.tabs(["Path A → B", "Layer-wise", "Singular vectors", "Barrier matrix", "Merging", "Instability"])
with tabs[0]:
    paths_tab(svc, runs)
with tabs[1]:
    layerwise_tab(svc, runs)
with tabs[2]:
    singular_tab(svc, runs)
with tabs[3]:
    matrix_tab(svc, zoo_id)
with tabs[4]:
    merge_tab(svc, runs)
with tabs[5]:
    instability_tab(svc, runs)
