"""Zoo map page: every model against every other -- distances, a map, clusters/basins, paths through training."""

import streamlit as st

from pages.ui.sidebar import page_start
from pages.ui.zoo_map_views import map_tab, training_tab

svc, zoo_id = page_start("Zoo map")
st.caption("Where every model of the zoo sits relative to every other: distances between all pairs (weights "
           "after alignment, loss barriers, representations, predictions), a map of them, and the clusters — "
           "for the barrier, the basins — they form. Selecting points selects runs for the other pages.")
tabs = st.tabs(["Map", "Through training"])
with tabs[0]:
    map_tab(svc, zoo_id)
with tabs[1]:
    training_tab(svc, zoo_id)
