"""Landscape page: loss surfaces (with their topology and the trajectory's distance off the plane), Hessian
spectrum, curvature per layer, sharpness over training, intrinsic and functional dimension."""

import streamlit as st

from pages.ui.functional_dimension_views import functional_dimension_tab
from pages.ui.landscape_views import intrinsic_tab, per_layer_tab, sharpness_tab, spectrum_tab, surface_tab
from pages.ui.pickers import pick_checkpoint, pick_run
from pages.ui.sidebar import page_start

svc, zoo_id = page_start("Loss landscape")
c1, c2 = st.columns([3, 1])
run_id = pick_run(svc, zoo_id, container=c1)
if run_id is None:
    st.info("This zoo has no finished runs yet; results appear here as runs finish.")
    st.stop()
ckpt = pick_checkpoint(svc, run_id, container=c2)
tabs = st.tabs(["Surface", "Hessian spectrum", "Curvature per layer", "Sharpness over training",
               "Intrinsic dimension", "Functional dimension"])
with tabs[0]:
    surface_tab(svc, run_id, ckpt)
with tabs[1]:
    spectrum_tab(svc, ckpt)
with tabs[2]:
    per_layer_tab(svc, run_id, ckpt)
with tabs[3]:
    sharpness_tab(svc, run_id)
with tabs[4]:
    intrinsic_tab(svc, run_id)
with tabs[5]:
    functional_dimension_tab(svc, zoo_id, run_id, ckpt)
