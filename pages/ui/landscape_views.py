"""Landscape page tabs: each picks probe parameters (kept in the URL), fetches or queues the probe, draws."""

from __future__ import annotations

import streamlit as st

from engine.figures import landscape as lfig

from .pickers import checkpoints_of, probe_result
from .report_draft import show_figure
from .services import Services
from .state import synced_selectbox
from .view_cache import shared_view

__all__ = ["intrinsic_tab", "sharpness_tab", "spectrum_tab", "surface_tab"]


def _int_choice(label, options, key, container=st, default=None):
    if default is not None and key not in st.session_state and key not in st.query_params:
        st.session_state[key] = default
    return synced_selectbox(label, options, key=key, container=container)


def surface_tab(svc: Services, run_id: str, ckpt: dict) -> None:
    c = st.columns(6)
    directions = synced_selectbox("Directions", ["filter", "hessian", "pca"], key="ls_dir", container=c[0],
                                  format_func={"filter": "random, filter-normalized", "hessian": "Hessian top/bottom",
                                               "pca": "PCA of the trajectory"}.get)
    ndim = _int_choice("Slice", [2, 1], "ls_ndim", c[1])
    resolution = _int_choice("Resolution", [11, 21, 41, 61], "ls_res", c[2], default=21)
    span = _int_choice("Span ±", [0.25, 0.5, 1.0, 2.0], "ls_span", c[3], default=1.0)
    split = synced_selectbox("Split", ["train", "test"], key="ls_split", container=c[4])
    metric = synced_selectbox("Show", ["loss", "accuracy"], key="ls_metric", container=c[5])
    log_scale = st.toggle("log scale", key="ls_log")
    ids = [ckpt["checkpoint_id"]]
    if directions == "pca":
        ckpts = checkpoints_of(svc, run_id)
        ids = ckpts[ckpts["step"] <= ckpt["step"]]["checkpoint_id"].tolist()
    params = {"directions": directions, "ndim": ndim, "resolution": resolution, "span": span, "split": split}
    status = probe_result(svc, "landscape.surface", params, ids, key="surface",
                          label=f"Compute the {resolution}{'×' + str(resolution) if ndim == 2 else ''} surface")
    if status is None:
        return
    surface = status.typed()  # Surface
    fig = shared_view(("landscape.surface", status.key, metric, log_scale), lambda: (
        lfig.surface_figure(surface, metric=metric, log_scale=log_scale) if surface.ndim == 2
        else lfig.slices_figure([surface], log_scale=log_scale)))
    show_figure(fig, key="surface_fig", title=f"Loss landscape ({directions}, {ndim}D, ±{span})",
                params={**params, "metric": metric, "log_scale": log_scale}, checkpoint_ids=ids, run_ids=[run_id],
                probe_keys=[status.key])
    st.caption(f"Centre loss {surface.center_loss:.4g}, accuracy {surface.center_accuracy:.3f} · "
               f"{surface.n_samples} {surface.split} samples · BatchNorm: {surface.bn} statistics · "
               f"{surface.strategy} evaluation in {surface.seconds:.1f} s")


def spectrum_tab(svc: Services, ckpt: dict) -> None:
    c = st.columns(3)
    k = _int_choice("Top-k eigenvalues", [1, 3, 5, 10], "hs_k", c[0], default=5)
    n_samples = _int_choice("Samples", [256, 1000, 4000], "hs_n", c[1], default=1000)
    log_scale = c[2].toggle("log density", value=True, key="hs_log")
    status = probe_result(svc, "curvature.spectrum", {"k": k, "n_samples": n_samples}, [ckpt["checkpoint_id"]],
                          key="spectrum", label="Compute the Hessian spectrum")
    if status is None:
        return
    spectrum = status.typed()  # SpectrumResult
    density, top, trace = spectrum.density, spectrum.top, spectrum.trace
    fig = shared_view(("landscape.spectrum", status.key, log_scale),
                      lambda: lfig.spectrum_figure(density, top=top, trace=trace, log_scale=log_scale))
    show_figure(fig, key="spectrum_fig",
                title="Hessian spectrum", params={"k": k, "n_samples": n_samples},
                checkpoint_ids=[ckpt["checkpoint_id"]], probe_keys=[status.key])
    st.caption(f"λ_max = {top.eigenvalues.max():.4g} ({top.n_products} Hessian-vector products, "
               f"{'converged' if top.converged else 'not converged'}) · trace {trace.trace:.4g} ± {trace.stderr:.2g} "
               f"({trace.n_probes} Rademacher probes) · {top.n_samples} samples")


def sharpness_tab(svc: Services, run_id: str) -> None:
    ids = checkpoints_of(svc, run_id)["checkpoint_id"].tolist()
    if len(ids) < 2:
        st.info("Sharpness over training needs at least two checkpoints of the run.")
        return
    status = probe_result(svc, "curvature.sharpness", {}, ids, key="sharpness",
                          label=f"Compute λ_max at all {len(ids)} checkpoints")
    if status is None:
        return
    sharp = status.typed()  # Sharpness
    fig = shared_view(("landscape.sharpness", status.key), lambda: lfig.sharpness_figure(sharp))
    show_figure(fig, key="sharpness_fig", title="Sharpness over training", params={},
                checkpoint_ids=ids, run_ids=[run_id], probe_keys=[status.key])
    st.caption("Cohen et al. (2021): full-batch gradient descent drives λ_max up to 2/η and hovers there "
               "(the edge of stability); the dashed line is 2/η for this run's learning rate.")


def intrinsic_tab(svc: Services, run_id: str) -> None:
    ckpts = checkpoints_of(svc, run_id)
    init = ckpts.iloc[0]
    c = st.columns(2)
    steps = _int_choice("Steps per subspace", [100, 300, 1000], "id_steps", c[0], default=300)
    top = _int_choice("Largest dimension", [100, 300, 1000], "id_top", c[1], default=300)
    dims = [d for d in (1, 2, 5, 10, 20, 50, 100, 200, 300, 500, 1000) if d <= top]
    status = probe_result(svc, "landscape.intrinsic_dimension", {"dims": dims, "n_steps": steps},
                          [init["checkpoint_id"]], key="intrinsic",
                          label=f"Train in {len(dims)} random subspaces from the initialisation")
    if status is None:
        return
    result = status.typed()  # IntrinsicDimension
    show_figure(shared_view(("landscape.intrinsic", status.key), lambda: lfig.intrinsic_dimension_figure(result)),
                key="intrinsic_fig", title="Intrinsic dimension",
                params={"dims": dims, "n_steps": steps}, checkpoint_ids=[init["checkpoint_id"]], run_ids=[run_id],
                probe_keys=[status.key])
    st.caption("Li et al. (2018): θ = θ₀ + P·z with a random P; d_int90 is the smallest d reaching 90% "
               "of the full model's score.")
