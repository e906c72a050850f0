"""Landscape page tabs: each picks probe parameters (kept in the URL), fetches or queues the probe, draws.

A 2D surface also shows its topology (basins, persistence diagram, merge tree: a cheap engine call on the
stored grid) and, drawn in PCA directions, how far the trajectory is from the plane.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from engine.figures import landscape as lfig
from engine.figures import landscape_topology as tfig
from engine.probes.landscape import surface_persistence

from .pickers import checkpoints_of, probe_result
from .report_draft import show_figure
from .services import Services
from .state import set_query, synced_selectbox
from .text import literal
from .view_cache import shared_view

__all__ = ["intrinsic_tab", "per_layer_tab", "sharpness_tab", "spectrum_tab", "surface_tab"]


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
    ckpts = checkpoints_of(svc, run_id)
    if directions == "pca":
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
    if surface.ndim == 2 and surface.off_plane is not None:  # PCA directions: the trajectory and its distances
        _plane_panel(surface, status.key, ckpts[ckpts["checkpoint_id"].isin(ids)]["step"].tolist())
    if surface.ndim == 2:
        _topology_panel(surface, status.key)


def _plane_panel(surface, key: str, steps: list[int]) -> None:
    steps = steps if len(steps) == len(surface.off_plane) else None
    show_figure(shared_view(("landscape.plane", key), lambda: lfig.plane_distance_figure(surface, steps=steps)),
                key="plane_fig", title="Trajectory vs the plane", params={}, probe_keys=[key])
    dist = surface.trajectory_distance
    share = np.divide(surface.off_plane, dist, out=np.zeros_like(dist), where=dist > 0)
    st.caption(f"The plane explains {surface.plane_explained:.1%} of the trajectory's variance. The path on the "
               "contours is each checkpoint's projection: the loss drawn under it is the loss of the projected "
               f"point, not of the checkpoint. Off the plane: up to {surface.off_plane.max():.3g} (parameter units, "
               f"as the axes), up to {share.max():.0%} of a checkpoint's distance from the centre; hover a point on "
               "the contours for its own.")


_DEPTHS = (0.0, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5)


def _depth_slider(key: str) -> float:
    """A select-slider over shares of the loss range, mirrored in the URL."""
    if key not in st.session_state:
        try:
            wanted = float(st.query_params.get(key, 0.02))
        except ValueError:
            wanted = 0.02
        st.session_state[key] = wanted if wanted in _DEPTHS else 0.02
    value = st.select_slider("Outline basins deeper than (share of the loss range)", options=_DEPTHS, key=key,
                             format_func=lambda v: f"{v:.0%}")
    set_query(**{key: value})
    return value


def _topology_panel(surface, key: str) -> None:
    share = _depth_slider("ls_basin")
    finite = surface.loss[np.isfinite(surface.loss)]
    threshold = share * float(finite.max() - finite.min()) if finite.size else 0.0
    p = shared_view(("landscape.persistence", key), lambda: surface_persistence(surface))
    fig = shared_view(("landscape.topology", key, share), lambda: tfig.persistence_figure(p, threshold=threshold))
    show_figure(fig, key="topology_fig", title="Topology of the surface", params={"basin_depth_share": share},
                probe_keys=[key])
    st.caption(f"Sublevel-set persistence of the loss grid (4-connected): {len(p.birth)} local minima; "
               f"{len(p.kept(threshold))} basin(s) deeper than {threshold:.3g} in loss. A basin's depth is the loss "
               "climb from its minimum to the saddle where it merges into a lower basin (death − birth in the "
               "diagram); shallower basins are merged into the one that absorbs them. The grid's resolution bounds "
               "what can be seen: a basin narrower than a grid step is not there.")


def per_layer_tab(svc: Services, run_id: str, ckpt: dict) -> None:
    ckpts = checkpoints_of(svc, run_id)
    ids = ckpts["checkpoint_id"].tolist()
    c = st.columns(3)
    level = synced_selectbox("Group parameters", ["layer", "block", "tensor"], key="pl_level", container=c[0],
                             format_func={"layer": "per layer (module)", "block": "per block",
                                          "tensor": "per parameter tensor"}.get)
    n_samples = _int_choice("Samples", [256, 1000, 4000], "pl_n", c[1], default=1000)
    quantity = synced_selectbox("Through training", ["top", "trace"], key="pl_q", container=c[2],
                                format_func={"top": "top eigenvalue", "trace": "trace"}.get)
    log_y = st.toggle("log eigenvalue axis", key="pl_log")
    params = {"level": level, "n_samples": n_samples}
    status = probe_result(svc, "curvature.per_layer", params, ids, key="per_layer",
                          label=f"Compute the curvature per {level} at all {len(ids)} checkpoints")
    if status is None:
        return
    res = status.typed()  # PerLayerHessian
    index = ids.index(ckpt["checkpoint_id"]) if ckpt["checkpoint_id"] in ids else len(ids) - 1
    show_figure(shared_view(("landscape.per_layer.bars", status.key, index, log_y),
                            lambda: lfig.per_layer_bars_figure(res, index=index, log_y=log_y)),
                key="per_layer_bars", title=f"Curvature per {level}", params={**params, "step": int(res.steps[index])},
                checkpoint_ids=[ids[index]], run_ids=[run_id], probe_keys=[status.key])
    show_figure(shared_view(("landscape.per_layer.lines", status.key, quantity, log_y),
                            lambda: lfig.per_layer_training_figure(res, quantity=quantity, log_y=log_y)),
                key="per_layer_lines", title=f"Curvature per {level} over training",
                params={**params, "show": quantity},
                checkpoint_ids=ids, run_ids=[run_id], probe_keys=[status.key])
    stuck = [b for b, ok in zip(res.blocks, res.converged[index]) if not ok]
    if stuck:
        st.warning(f"Lanczos did not converge for {len(stuck)} block(s) at this checkpoint "
                   f"({literal(', '.join(stuck), limit=200)}); their bars are lower bounds.")
    st.caption("Each block is the Hessian of the loss in that block's parameters alone, the rest held fixed: "
               "the top eigenvalue λ₁ by Lanczos on Hessian-vector products with vectors zero outside the block, "
               "the trace exact (unit vectors) for blocks with no more parameters than probes, else by Hutchinson "
               "with Rademacher probes (± 2 standard errors). The whole Hessian's λ₁ is at least every block's. "
               "The dashed line is 2/η for the run's learning rate: gradient descent on a quadratic is stable "
               "only below it (Cohen et al. 2021); when it is far above every block, the linear axis stops short of "
               f"it and a note says where it is (the log axis shows both). {res.n_samples} samples, "
               f"{res.n_products} Hessian-vector products.")


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
