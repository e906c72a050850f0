"""Phases page: landscape metrics across a zoo's hyperparameters -- heatmaps, the phase map, grokking, pruning."""

import streamlit as st

from engine.probes.phases import PHASE_METRICS, cell_table
from pages.ui.phases_views import (
    axes_picker,
    cell_links,
    cell_params,
    cells_panel,
    cells_table,
    grokking_section,
    heatmaps_section,
    phase_section,
)
from pages.ui.pickers import pick_run
from pages.ui.pruning_views import pruning_section
from pages.ui.reads import zoo_sweep
from pages.ui.sidebar import page_start
from pages.ui.text import literal

svc, zoo_id = page_start("Phase diagrams")
sweep = zoo_sweep(svc, zoo_id)
tabs = st.tabs(["Phase diagram", "Grokking", "Pruning"])
with tabs[0]:
    params = cell_params()
    done = cells_panel(svc, zoo_id, params)
    if not done:
        st.info("No cell of this zoo is probed yet: **Probe this zoo** runs the sweep in the background "
                "(its finished runs only; cells appear as they are done).")
    else:
        runs = cells_table(svc, zoo_id, done)
        t, ld, constants = axes_picker(sweep)
        metrics = [m for m in PHASE_METRICS if m in runs.columns and runs[m].notna().any()]
        cells = cell_table(runs, t, ld, metrics, constants)
        ids = [c for r in done for c in r.checkpoint_ids]
        st.subheader("Metrics over temperature × load (mean over seeds)")
        heatmaps_section(cells, metrics, t, ld, ids)
        st.subheader("Phase map")
        classified = phase_section(cells, t, ld, ids)
        st.subheader("Open a cell")
        cell_links(classified, zoo_id, t, ld)
with tabs[1]:
    dataset = ((sweep.get("base") or {}).get("dataset") or {}).get("name")
    if dataset != "modular":
        st.info("The grokking view is for zoos on the `modular` dataset (try `configs/grokking.toml`); "
                f"this zoo trains on {literal(dataset)}.")
    else:
        run_id = pick_run(svc, zoo_id, key="run")
        if run_id is None:
            st.info("No finished runs yet.")
        else:
            grokking_section(svc, run_id)
with tabs[2]:
    pruning_section(svc, zoo_id, sweep)
