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
                        subplot_titles=("surface", "contours"), horizontal_spacing=0.08)
    fig.add_trace(go.Surface(x=surface.alphas, y=surface.betas, z=z.T, customdata=custom, hovertemplate=hover,
                             colorscale="Viridis", showscale=False, name=zlabel), 1, 1)
    fig.add_trace(go.Contour(x=surface.alphas, y=surface.betas, z=z.T, customdata=custom, hovertemplate=hover,
                             colorscale="Viridis", ncontours=30, colorbar=dict(title=zlabel), name=zlabel), 1, 2)
    fig.add_trace(go.Scatter(x=[0.0], y=[0.0], mode="markers", name="centre",
                             marker=dict(symbol="x", size=10, color="white", line=dict(width=1, color="black")),
                             hovertemplate=f"centre<br>loss={surface.center_loss:.4g}<br>"
                                           f"acc={surface.center_accuracy:.3f}<extra></extra>"), 1, 2)
    traj = surface.trajectory if trajectory is None else np.asarray(trajectory, dtype=float)
    if traj is not None and len(traj):
        steps = np.arange(len(traj))
        fig.add_trace(go.Scatter(x=traj[:, 0], y=traj[:, 1], mode="lines+markers", name="trajectory",
                                 line=dict(color=PALETTE[3]), customdata=steps,
                                 hovertemplate="checkpoint %{customdata}<br>a=%{x:.3f}<br>b=%{y:.3f}<extra></extra>"),
                      1, 2)
        fig.add_trace(go.Scatter3d(x=traj[:, 0], y=traj[:, 1], z=_trajectory_z(surface, traj, z),
                                   mode="lines+markers", name="trajectory (3D)", showlegend=False,
                                   line=dict(color=PALETTE[3], width=4), marker=dict(size=3)), 1, 1)
    d1, d2 = (_label(d) for d in surface.directions)
    fig.update_xaxes(title_text=f"a: {d1}", row=1, col=2)
    fig.update_yaxes(title_text=f"b: {d2}", row=1, col=2)
    fig.update_scenes(xaxis_title="a", yaxis_title="b", zaxis_title=zlabel)
    default = f"{metric} surface ({surface.split}, {surface.n_samples} samples, BN: {surface.bn})"
    return finish(fig, title=title or default, height=520)


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
