"""Figures for loss landscapes and curvature: surfaces, slices, spectra, sharpness, intrinsic dimension.

Each function takes a result dataclass from ``engine.probes`` and returns a
``plotly.graph_objects.Figure`` whose hover text carries the numbers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from engine.figures.style import PALETTE, escape, finish

__all__ = [
    "intrinsic_dimension_figure",
    "per_layer_bars_figure",
    "per_layer_training_figure",
    "plane_distance_figure",
    "sharpness_figure",
    "slices_figure",
    "spectrum_figure",
    "surface_figure",
]

_METRICS = {"loss": "loss", "accuracy": "accuracy"}


def _label(direction: dict) -> str:
    method = direction.get("method", "custom")
    bits = [f"{k}={direction[k]}" for k in ("seed", "norm", "end", "component", "axis") if k in direction]
    if "eigenvalue" in direction:
        bits.append(f"λ={direction['eigenvalue']:.4g}")
    return escape(f"{method} ({', '.join(bits)})" if bits else method)


def _trajectory_z(surface, traj: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Bilinear interpolation of the plotted grid at the trajectory's coordinates."""
    from scipy.interpolate import RegularGridInterpolator

    f = RegularGridInterpolator((surface.alphas, surface.betas), z, bounds_error=False, fill_value=None)
    return f(traj)


def surface_figure(
    surface,
    *,
    metric: str = "loss",
    log_scale: bool = False,
    trajectory: np.ndarray | None = None,
    title: str | None = None,
) -> go.Figure:
    """A 2D slice as a 3D surface and a contour map side by side.

    Parameters
    ----------
    surface : engine.probes.landscape.surface.Surface
        A 2D surface.
    metric : {"loss", "accuracy"}
        What to draw.
    log_scale : bool
        Draw ``log10`` of the values (hover still shows the raw numbers).
    trajectory : np.ndarray, shape (n, 2), optional
        Points to overlay (defaults to ``surface.trajectory``, e.g. PCA coordinates).
    title : str, optional
    """
    if surface.betas is None:
        raise ValueError("surface_figure needs a 2D surface; draw a 1D one with slices_figure")
    if metric not in _METRICS:
        raise ValueError(f"metric must be 'loss' or 'accuracy'; got {metric!r}")
    raw = surface.loss if metric == "loss" else surface.accuracy
    z = np.log10(np.maximum(raw, 1e-12)) if log_scale else raw
    zlabel = f"log10 {metric}" if log_scale else metric
    custom = np.stack([surface.loss.T, surface.accuracy.T], -1)  # (R2, R1, 2): rows follow betas
    hover = "a=%{x:.3f}<br>b=%{y:.3f}<br>loss=%{customdata[0]:.4g}<br>acc=%{customdata[1]:.3f}<extra></extra>"
    fig = make_subplots(rows=1, cols=2, specs=[[{"type": "scene"}, {"type": "xy"}]],
                        subplot_titles=("surface", "contours"), horizontal_spacing=0.12)
    fig.add_trace(go.Surface(x=surface.alphas, y=surface.betas, z=z.T, customdata=custom, hovertemplate=hover,
                             colorscale="Viridis", showscale=False, name=zlabel), 1, 1)
    fig.add_trace(go.Contour(x=surface.alphas, y=surface.betas, z=z.T, customdata=custom, hovertemplate=hover,
                             colorscale="Viridis", ncontours=30, name=zlabel,
                             colorbar=dict(title=zlabel, len=0.8, y=0, yanchor="bottom")), 1, 2)  # legend above it
    fig.add_trace(go.Scatter(x=[0.0], y=[0.0], mode="markers", name="centre",
                             marker=dict(symbol="x", size=10, color="white", line=dict(width=1, color="black")),
                             hovertemplate=f"centre<br>loss={surface.center_loss:.4g}<br>"
                                           f"acc={surface.center_accuracy:.3f}<extra></extra>"), 1, 2)
    traj = surface.trajectory if trajectory is None else np.asarray(trajectory, dtype=float)
    if traj is not None and len(traj):
        custom, hover = _trajectory_hover(surface, len(traj), trajectory is None)
        fig.add_trace(go.Scatter(x=traj[:, 0], y=traj[:, 1], mode="lines+markers", name="trajectory",
                                 line=dict(color=PALETTE[3]), customdata=custom, hovertemplate=hover), 1, 2)
        fig.add_trace(go.Scatter3d(x=traj[:, 0], y=traj[:, 1], z=_trajectory_z(surface, traj, z),
                                   mode="lines+markers", name="trajectory (3D)", showlegend=False,
                                   line=dict(color=PALETTE[3], width=4), marker=dict(size=3)), 1, 1)
    d1, d2 = (_label(d) for d in surface.directions)
    fig.update_xaxes(title_text=f"a: {d1}", row=1, col=2)
    fig.update_yaxes(title_text=f"b: {d2}", row=1, col=2)
    fig.update_scenes(xaxis_title="a", yaxis_title="b", zaxis_title=zlabel)
    default = f"{metric} surface ({surface.split}, {surface.n_samples} samples, BN: {surface.bn})"
    return finish(fig, title=title or default, height=520)


def _trajectory_hover(surface, n: int, stored: bool) -> tuple[np.ndarray, str]:
    """Checkpoint index, and for a stored PCA trajectory its distance off the plane and that share."""
    hover = "checkpoint %{customdata[0]}<br>a=%{x:.3f}<br>b=%{y:.3f}"
    off = getattr(surface, "off_plane", None)
    if not stored or off is None or len(off) != n:
        return np.arange(n)[:, None], hover + "<extra></extra>"
    dist = surface.trajectory_distance
    share = np.divide(off, dist, out=np.zeros_like(off), where=dist > 0)
    hover += "<br>off the plane: %{customdata[1]:.4g} (%{customdata[2]:.1%} of its distance from the centre)"
    return np.stack([np.arange(n), off, share], 1), hover + "<extra></extra>"


def _center_slices(surface) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    if surface.betas is None:
        return [("a", surface.alphas, surface.loss, surface.accuracy)]
    i = int(np.argmin(np.abs(surface.alphas)))
    j = int(np.argmin(np.abs(surface.betas)))
    return [("a (b=0)", surface.alphas, surface.loss[:, j], surface.accuracy[:, j]),
            ("b (a=0)", surface.betas, surface.loss[i, :], surface.accuracy[i, :])]


def slices_figure(surfaces, labels: Sequence[str] | None = None, *, log_scale: bool = False,
                  title: str | None = None) -> go.Figure:
    """1D slices: loss (solid, left axis) and accuracy (dotted, right axis).

    Parameters
    ----------
    surfaces : Surface or sequence of Surface
        1D surfaces are drawn as they are; a 2D surface contributes its two slices
        through the centre.
    labels : sequence of str, optional
        One per surface.
    log_scale : bool
        Logarithmic loss axis.
    """
    surfaces = [surfaces] if not isinstance(surfaces, (list, tuple)) else list(surfaces)
    labels = list(labels) if labels is not None else [f"slice {i + 1}" for i in range(len(surfaces))]
    if len(labels) != len(surfaces):
        raise ValueError(f"got {len(labels)} labels for {len(surfaces)} surfaces")
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    k = 0
    for surf, label in zip(surfaces, labels):
        for axis, coord, loss, acc in _center_slices(surf):
            name = escape(label if surf.betas is None else f"{label}: {axis}")
            color = PALETTE[k % len(PALETTE)]
            k += 1
            fig.add_trace(go.Scatter(x=coord, y=loss, mode="lines", name=f"{name} loss", line=dict(color=color),
                                     customdata=acc, hovertemplate="t=%{x:.3f}<br>loss=%{y:.4g}<br>"
                                     "acc=%{customdata:.3f}<extra>" + name + "</extra>"), secondary_y=False)
            if not np.all(np.isnan(acc)):
                fig.add_trace(go.Scatter(x=coord, y=acc, mode="lines", name=f"{name} acc",
                                         line=dict(color=color, dash="dot"),
                                         hovertemplate="t=%{x:.3f}<br>acc=%{y:.3f}<extra>" + name + "</extra>"),
                              secondary_y=True)
    fig.update_xaxes(title_text="step along direction")
    fig.update_yaxes(title_text="loss", type="log" if log_scale else "linear", secondary_y=False)
    fig.update_yaxes(title_text="accuracy", range=[0, 1], secondary_y=True)
    return finish(fig, title=title or "1D slices")


def spectrum_figure(density, *, top=None, trace=None, log_scale: bool = True, title: str | None = None) -> go.Figure:
    """Hessian eigenvalue density with the top eigenvalues marked and the trace in the title.

    Parameters
    ----------
    density : engine.probes.landscape.spectrum.SpectralDensity
    top : engine.probes.landscape.curvature.HessianEigs, optional
        Eigenvalues to mark; the largest Ritz values of the density otherwise.
    trace : engine.probes.landscape.trace.TraceEstimate, optional
        Hutchinson trace with its error bar; the SLQ estimate otherwise.
    log_scale : bool
        Logarithmic density axis, where the outliers (weight ~ 1/P) become visible.
    """
    fig = go.Figure()
    floor = max(density.density.max() * 1e-12, 1e-300)
    fig.add_trace(go.Scatter(x=density.grid, y=np.maximum(density.density, floor), mode="lines", name="density",
                             line=dict(color=PALETTE[0]), fill="tozeroy",
                             hovertemplate="λ=%{x:.4g}<br>density=%{y:.3g}<extra></extra>"))
    eigs = np.asarray(top.eigenvalues) if top is not None else np.sort(density.nodes[density.weights > 0])[-1:]
    for i, lam in enumerate(np.sort(eigs)[::-1]):
        fig.add_vline(x=float(lam), line=dict(color=PALETTE[3], dash="dash", width=1))
        fig.add_trace(go.Scatter(x=[float(lam)], y=[floor if log_scale else 0.0], mode="markers",
                                 name=f"λ{i + 1}", marker=dict(color=PALETTE[3], size=9, symbol="triangle-up"),
                                 hovertemplate=f"λ{i + 1}={lam:.5g}<extra></extra>", showlegend=i == 0))
    if trace is not None:
        trace_text = f"trace = {trace.trace:.4g} ± {trace.stderr:.2g} (Hutchinson, {trace.n_probes} probes)"
    else:
        trace_text = f"trace ≈ {density.trace:.4g} (SLQ)"
    fig.update_xaxes(title_text="eigenvalue")
    fig.update_yaxes(title_text="density", type="log" if log_scale else "linear")
    return finish(fig, title=title or f"Hessian spectrum, {trace_text}")


def sharpness_figure(sharpness, *, title: str | None = None) -> go.Figure:
    """Top Hessian eigenvalue(s) against training step, with the ``2 / lr`` stability line.

    Parameters
    ----------
    sharpness : engine.probes.landscape.curvature.Sharpness
    """
    fig = go.Figure()
    steps = sharpness.steps
    for i in range(sharpness.eigenvalues.shape[1]):
        fig.add_trace(go.Scatter(x=steps, y=sharpness.eigenvalues[:, i], mode="lines+markers", name=f"λ{i + 1}",
                                 line=dict(color=PALETTE[i % len(PALETTE)], width=2 if i == 0 else 1),
                                 opacity=1.0 if i == 0 else 0.6,
                                 hovertemplate="step %{x}<br>λ" + str(i + 1) + "=%{y:.5g}<extra></extra>"))
    if sharpness.threshold is not None:
        fig.add_trace(go.Scatter(x=steps, y=sharpness.threshold, mode="lines", name="2 / η",
                                 line=dict(color="black", dash="dash"), customdata=sharpness.lr,
                                 hovertemplate="step %{x}<br>2/η=%{y:.4g}<br>η=%{customdata:.3g}<extra></extra>"))
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text="top Hessian eigenvalue")
    return finish(fig, title=title or "Sharpness over training")


def intrinsic_dimension_figure(result, *, log_x: bool = True, title: str | None = None) -> go.Figure:
    """Score against subspace dimension, the full model's score, and ``d_int90`` marked.

    Parameters
    ----------
    result : engine.probes.landscape.subspace.IntrinsicDimension
    log_x : bool
        Logarithmic dimension axis.
    """
    mean, std = result.scores.mean(0), result.scores.std(0)
    fig = go.Figure()
    for s, seed in enumerate(result.seeds):
        fig.add_trace(go.Scatter(x=result.dims, y=result.scores[s], mode="markers", name=f"seed {seed}",
                                 marker=dict(color=PALETTE[5], size=5, opacity=0.5), showlegend=s == 0,
                                 hovertemplate="d=%{x}<br>" + result.metric + "=%{y:.4f}<extra>seed " + str(seed)
                                               + "</extra>"))
    fig.add_trace(go.Scatter(x=result.dims, y=mean, mode="lines+markers", name="mean",
                             error_y=dict(type="data", array=std, visible=len(result.seeds) > 1),
                             line=dict(color=PALETTE[0]),
                             hovertemplate="d=%{x}<br>mean " + result.metric + "=%{y:.4f}<extra></extra>"))
    fig.add_hline(y=result.baseline, line=dict(color="black", dash="dash"),
                  annotation_text=f"full model {result.baseline:.3f}")
    fig.add_hline(y=0.9 * result.baseline, line=dict(color="gray", dash="dot"), annotation_text="90%")
    d90 = result.d_int90
    if d90 is not None:
        fig.add_vline(x=d90, line=dict(color=PALETTE[3], dash="dash"))
        fig.add_trace(go.Scatter(x=[d90], y=[0.9 * result.baseline], mode="markers", name=f"d_int90 = {d90}",
                                 marker=dict(color=PALETTE[3], size=12, symbol="star"),
                                 hovertemplate=f"d_int90={d90}<extra></extra>"))
    fig.update_xaxes(title_text="subspace dimension d", type="log" if log_x else "linear")
    fig.update_yaxes(title_text=result.metric)
    label = f"d_int90 = {d90}" if d90 is not None else "90% not reached"
    return finish(fig, title=title or f"Intrinsic dimension ({result.n_params} parameters), {label}")


def plane_distance_figure(surface, *, steps: Sequence[int] | None = None, title: str | None = None) -> go.Figure:
    """Each trajectory checkpoint's distance off the surface's plane, beside its distance in it; below, the
    share of its distance from the centre that lies off the plane (undefined, so not drawn, at the centre).

    Parameters
    ----------
    surface : engine.probes.landscape.surface.Surface
        A 2D surface with a stored trajectory and ``off_plane`` (PCA directions).
    steps : sequence of int, optional
        Training step of each checkpoint (x axis); checkpoint indices otherwise.
    """
    if surface.trajectory is None or surface.off_plane is None:
        raise ValueError("plane_distance_figure needs a surface with a trajectory and its distances off the plane "
                         "(a PCA-directions surface); got one without")
    off, dist = np.asarray(surface.off_plane), np.asarray(surface.trajectory_distance)
    x = np.arange(len(off)) if steps is None else np.asarray(steps)
    if len(x) != len(off):
        raise ValueError(f"got {len(x)} steps for {len(off)} trajectory checkpoints")
    share = np.divide(off, dist, out=np.full_like(off, np.nan), where=dist > 0)  # none at the centre itself
    inplane = np.linalg.norm(surface.trajectory, axis=1)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.62, 0.38], vertical_spacing=0.08)
    fig.add_trace(go.Scatter(x=x, y=off, mode="lines+markers", name="off the plane", line=dict(color=PALETTE[3]),
                             customdata=np.nan_to_num(share), hovertemplate="step %{x}<br>off the plane %{y:.4g}"
                             "<br>%{customdata:.1%} of the distance from the centre<extra></extra>"), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=inplane, mode="lines+markers", name="in the plane (‖(a, b)‖)",
                             line=dict(color=PALETTE[0], dash="dot"),
                             hovertemplate="step %{x}<br>in the plane %{y:.4g}<extra></extra>"), 1, 1)
    fig.add_trace(go.Scatter(x=x, y=share, mode="lines+markers", name="share off the plane",
                             line=dict(color=PALETTE[3], dash="dash"), marker=dict(symbol="square"),
                             hovertemplate="step %{x}<br>%{y:.1%} off the plane<extra></extra>"), 2, 1)
    fig.update_xaxes(title_text="step" if steps is not None else "checkpoint", row=2, col=1)
    fig.update_yaxes(title_text="distance (parameter units)", rangemode="tozero", row=1, col=1)
    fig.update_yaxes(title_text="off-plane share", range=[0, 1], tickvals=[0, 0.25, 0.5, 0.75, 1], tickformat=".0%",
                     row=2, col=1)
    explained = surface.plane_explained
    default = "Trajectory vs the plane" + (f": the plane explains {explained:.1%} of its variance"
                                            if explained is not None else "")
    return finish(fig, title=title or default, height=440)


def _far_below(values: np.ndarray, threshold, log_y: bool) -> float | None:
    """The axis top that keeps ``values`` readable when ``2 / η`` is far above them on a linear axis, else None.

    A linear axis stretched to ``2 / η`` (often 10-100x the blocks' eigenvalues) flattens every bar and
    line onto its floor; the log axis shows both.
    """
    values = np.asarray(values, dtype=float)
    top = float(np.nanmax(values)) if np.isfinite(values).any() else 0.0
    if log_y or threshold is None or top <= 0 or float(np.nanmax(threshold)) <= 3 * top:
        return None
    return 1.15 * top


def _off_axis_note(fig: go.Figure, threshold: float, top: float, axis: str = "") -> None:
    """Say, inside the top of the plot (above the data, see _far_below), where the 2/η line went."""
    fig.add_annotation(text=f"2/η = {threshold:.4g}: above the axis, {threshold / top:.0f}× the largest λ_max",
                       xref=f"x{axis} domain", x=0.01, yref=f"y{axis} domain", y=1, xanchor="left", yanchor="top",
                       showarrow=False, font=dict(size=11, color="black"), bgcolor="rgba(255,255,255,0.8)")


def _block_labels(result) -> list[str]:
    return [escape(f"{b} ({n:,})") for b, n in zip(result.blocks, result.sizes)]


def per_layer_bars_figure(result, *, index: int = -1, log_y: bool = False, title: str | None = None) -> go.Figure:
    """Top eigenvalue and trace of each block's diagonal Hessian block at one checkpoint, as bars.

    Parameters
    ----------
    result : engine.probes.landscape.per_layer.PerLayerHessian
    index : int
        Which checkpoint (row) to draw.
    log_y : bool
        Logarithmic eigenvalue axis (``2 / η`` is often far above the blocks' eigenvalues).
    """
    n = len(result.steps)
    if not -n <= index < n:
        raise ValueError(f"index must be in [{-n}, {n - 1}] for {n} checkpoints; got {index}")
    labels = _block_labels(result)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("top eigenvalue of the block", "trace of the block"),
                        horizontal_spacing=0.12)
    ok = np.where(result.converged[index], "converged", "not converged")
    fig.add_trace(go.Bar(x=labels, y=result.top[index], name="λ_max", marker_color=PALETTE[0],
                         customdata=list(zip(result.residuals[index].tolist(), ok.tolist())),
                         hovertemplate="%{x}<br>λ_max=%{y:.5g}<br>residual %{customdata[0]:.2g} "
                                       "(%{customdata[1]})<extra></extra>"), 1, 1)
    exact = result.trace_stderr[index] == 0
    fig.add_trace(go.Bar(x=labels, y=result.trace[index], name="trace", marker_color=PALETTE[2],
                         error_y=dict(type="data", array=2 * result.trace_stderr[index], visible=not exact.all()),
                         customdata=np.where(exact, "exact", "Hutchinson ± 2 s.e."),
                         hovertemplate="%{x}<br>trace=%{y:.5g} (%{customdata})<extra></extra>"), 1, 2)
    fig.update_yaxes(title_text="eigenvalue", type="log" if log_y else "linear", row=1, col=1)
    if result.threshold is not None:
        eos = float(result.threshold[index])
        top = _far_below(result.top[index], eos, log_y)
        if top is None:
            fig.add_hline(y=eos, line=dict(color="black", dash="dash"), row=1, col=1,
                          annotation_text=f"2/η = {eos:.4g}", annotation_position="top left")
        else:
            fig.update_yaxes(range=[min(0.0, 1.15 * float(np.nanmin(result.top[index]))), top], row=1, col=1)
            _off_axis_note(fig, eos, top / 1.15)
    fig.update_yaxes(title_text="trace", row=1, col=2)
    fig.update_layout(showlegend=False)
    step = result.steps[index]
    return finish(fig, title=title or f"Curvature per {result.level} at step {step}", height=400)


def per_layer_training_figure(result, *, quantity: str = "top", log_y: bool = False,
                              title: str | None = None) -> go.Figure:
    """Each block's top eigenvalue (or trace) through training, with the ``2 / η`` line.

    Parameters
    ----------
    result : engine.probes.landscape.per_layer.PerLayerHessian
    quantity : {"top", "trace"}
    log_y : bool
        Logarithmic value axis (non-positive values are dropped from view).
    """
    if quantity not in ("top", "trace"):
        raise ValueError(f"quantity must be 'top' or 'trace'; got {quantity!r}")
    values = result.top if quantity == "top" else result.trace
    name = "λ_max" if quantity == "top" else "trace"
    fig = go.Figure()
    for b, label in enumerate(_block_labels(result)):
        fig.add_trace(go.Scatter(x=result.steps, y=values[:, b], mode="lines+markers", name=label,
                                 line=dict(color=PALETTE[b % len(PALETTE)]),
                                 hovertemplate="step %{x}<br>" + name + "=%{y:.5g}<extra>" + label + "</extra>"))
    if quantity == "top" and result.threshold is not None:
        fig.add_trace(go.Scatter(x=result.steps, y=result.threshold, mode="lines", name="2 / η (edge of stability)",
                                 line=dict(color="black", dash="dash"), customdata=result.lr,
                                 hovertemplate="step %{x}<br>2/η=%{y:.4g}<br>η=%{customdata:.3g}<extra></extra>"))
    fig.update_xaxes(title_text="step")
    fig.update_yaxes(title_text=f"{name} of the block", type="log" if log_y else "linear")
    top = _far_below(values, result.threshold, log_y) if quantity == "top" else None
    if top is not None:
        fig.update_yaxes(range=[min(0.0, 1.15 * float(np.nanmin(values))), top])
        _off_axis_note(fig, float(np.nanmax(result.threshold)), top / 1.15)
    what = "Top eigenvalue" if quantity == "top" else "Trace"
    return finish(fig, title=title or f"{what} per {result.level} over training")
