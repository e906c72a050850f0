"""Landscape page, functional-dimension tab: Jacobian rank over a run's training, its scree at the
picked checkpoint, and the stored ranks of the zoo's runs against a hyperparameter."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from engine.auth import PermissionDenied
from engine.figures import functional_dimension as ffig
from engine.jobs import ProbeService

from .pickers import checkpoints_of, probe_result
from .report_draft import show_figure
from .services import Services, cached_runs, current_user, may
from .state import synced_selectbox
from .text import literal
from .view_cache import shared_view

__all__ = ["functional_dimension_tab"]

PROBE = "landscape.functional_dimension"
RANK, BOUND = "probe_functional_dimension", "probe_functional_dimension_bound"


def _params() -> dict:
    c = st.columns(2)
    inputs = synced_selectbox("Inputs", ["gaussian", "data"], key="fd_inputs", container=c[0],
                              format_func={"gaussian": "standard normal points (as the paper)",
                                           "data": "the run's training data"}.get)
    oversample = synced_selectbox("Inputs per parameter ÷ outputs", [1.0, 2.0, 4.0, 8.0, 16.0], key="fd_over",
                                  container=c[1], default=2.0)
    return {"inputs": inputs, "oversample": float(oversample)}


def _run_view(svc: Services, run_id: str, ckpt: dict, params: dict) -> None:
    ckpts = checkpoints_of(svc, run_id)
    ids = ckpts["checkpoint_id"].tolist()
    status = probe_result(svc, PROBE, params, ids, key="fdim",
                          label=f"Compute the Jacobian rank at all {len(ids)} checkpoints of this run")
    if status is None:
        return
    curve = status.typed()  # FunctionalDimensionCurve
    fig = shared_view(("landscape.fdim.curve", status.key),
                      lambda: ffig.functional_dimension_over_training_figure(curve))
    show_figure(fig, key="fdim_curve_fig", title="Functional dimension over training", params=params,
                checkpoint_ids=ids, run_ids=[run_id], probe_keys=[status.key])
    i = ids.index(ckpt["checkpoint_id"]) if ckpt["checkpoint_id"] in ids else len(ids) - 1
    at = curve.at(i)
    scree = shared_view(("landscape.fdim.scree", status.key, i), lambda: ffig.scree_figure(
        at, title=f"Jacobian scree at step {int(curve.steps[i])}: rank {at.rank} of {at.bound}"))
    show_figure(scree, key="fdim_scree_fig", title=f"Jacobian scree at step {int(curve.steps[i])}",
                params={**params, "step": int(curve.steps[i])}, checkpoint_ids=[ids[i]], run_ids=[run_id],
                probe_keys=[status.key])
    st.caption(f"{curve.n_params} parameters − {curve.n_hidden_neurons} positive scalings (one per hidden ReLU "
               f"neuron) = bound {curve.symmetry_bound}; {curve.n_inputs} {curve.inputs} inputs × "
               f"{curve.n_outputs} outputs. Rank: singular values above max(σ)·max(J.shape)·ε(float64), as "
               "numpy.linalg.matrix_rank counts them. A rank below the bound means hidden symmetries (Grigsby, "
               "Lindsey & Rolnick 2023); on a batch it is a lower bound, so a dead or never-switching neuron "
               "counts too.")


def _zoo_view(svc: Services, zoo_id: str, params: dict) -> None:
    st.markdown("**Across the zoo**: the last stored rank of each run (latest checkpoint it was measured at).")
    runs = cached_runs(svc, zoo_id)
    runs = runs[runs["status"].isin(["done", "diverged"]) & runs["last_checkpoint_id"].notna()]
    have = runs[RANK].notna() if RANK in runs.columns else pd.Series(False, index=runs.index)
    missing = runs.loc[~have, "run_id"].tolist()
    if missing and may("launch") and st.button(f"Compute for the other {len(missing)} runs", key="fdim_zoo_go"):
        service, refused = ProbeService(svc.dispatcher), []
        for run_id in missing:
            try:
                service.request(PROBE, params, checkpoints_of(svc, run_id)["checkpoint_id"].tolist(),
                                owner=current_user())
            except (PermissionDenied, ValueError) as exc:  # ValueError: a checkpoint without stored weights
                refused.append(str(exc))
        if refused:
            st.error(literal(f"{len(refused)} of {len(missing)} runs were not queued: {refused[0]}"))
        else:
            st.rerun()
    if not have.any():
        st.info("No run of this zoo has a stored functional dimension yet.")
        return
    table = runs[have].rename(columns={RANK: "rank", BOUND: "bound"})
    knobs = [c for c in table.columns if c.startswith("hp_") and table[c].nunique() > 1] + ["seed"]
    x = synced_selectbox("Against", knobs, key="fd_hp", format_func=lambda c: c.removeprefix("hp_"))
    fig = shared_view(("landscape.fdim.zoo", zoo_id, svc.version("run", "metric.probe"), x),
                      lambda: ffig.functional_dimension_runs_figure(table, x))
    show_figure(fig, key="fdim_zoo_fig", title="Functional dimension across runs", params={"x": x},
                run_ids=table["run_id"].tolist())
    st.caption(f"{int(have.sum())} of {len(runs)} runs measured. A run's value is whichever input choice was "
               "computed last for it.")


def functional_dimension_tab(svc: Services, zoo_id: str, run_id: str, ckpt: dict) -> None:
    params = _params()
    _run_view(svc, run_id, ckpt, params)
    st.divider()
    _zoo_view(svc, zoo_id, params)
