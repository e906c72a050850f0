"""Rashomon sets: the good models of a zoo, a sampled model class or sparse trees; their multiplicity and
explanations, filtered by an ε slider that runs inline on stored losses."""

import streamlit as st

from pages.ui.rashomon_sources import SOURCES, population_source, sample_source, tree_source
from pages.ui.rashomon_views import rashomon_panels
from pages.ui.services import get_services
from pages.ui.sidebar import sidebar
from pages.ui.state import synced_selectbox

svc = get_services()
zoo_id = sidebar(svc)
st.title("Rashomon sets")
st.caption("The set of almost-equally-good models (Breiman 2001): how many there are, where they disagree, "
           "and how their explanations vary. Every ε says whether it is relative or absolute.")
source = synced_selectbox("Models", list(SOURCES), key="rs_src", format_func=SOURCES.get,
                          default="zoo" if zoo_id else "sample")
if source == "zoo":
    if zoo_id is None:
        st.info("No zoo yet: train or import one (Zoo page), or pick a sampled model class or sparse trees above.")
        st.stop()
    view = population_source(svc, zoo_id)
elif source == "sample":
    view = sample_source(svc)
else:
    view = tree_source(svc)
if view is None:
    st.stop()
rashomon_panels(view)
