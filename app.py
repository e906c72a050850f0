"""Zooscope's dashboard: ``streamlit run app.py`` (or ``make run`` / ``zooscope serve``)."""

from pathlib import Path

import streamlit as st

st.set_page_config(page_title="Zooscope", page_icon=str(Path(__file__).parent / "assets" / "icon.png"), layout="wide")

PAGES = [
    st.Page("pages/zoo.py", title="Zoo", icon=":material/pets:", default=True),
    st.Page("pages/landscape.py", title="Landscape", icon=":material/landscape:", url_path="landscape"),
    st.Page("pages/connectivity.py", title="Connectivity", icon=":material/link:", url_path="connectivity"),
    st.Page("pages/representations.py", title="Representations", icon=":material/hub:", url_path="representations"),
    st.Page("pages/zoo_map.py", title="Zoo map", icon=":material/scatter_plot:", url_path="zoo_map"),
    st.Page("pages/phases.py", title="Phases", icon=":material/grid_on:", url_path="phases"),
    st.Page("pages/rashomon.py", title="Rashomon", icon=":material/theater_comedy:", url_path="rashomon"),
    st.Page("pages/reports.py", title="Reports", icon=":material/description:", url_path="reports"),
]

from pages.ui.services import get_services  # noqa: E402
from pages.ui.signin import sign_in_gate  # noqa: E402

sign_in_gate(get_services().access)  # with sign-in on, nothing but the sign-in form until someone signs in
st.navigation(PAGES).run()
