"""Reproduction: topological RSA stays stable where the geometry changes (Lin & Kriegeskorte, PNAS 2024).

Two representations of the same samples share a topology but not a geometry:

* **clusters** -- 6 clusters of 10 points in 10-D (centres N(0, I), within-cluster spread 0.15);
  representation B moves every cluster *as a whole* by N(0, sigma^2 I): the between-cluster
  distances change, the cluster membership does not.
* **ring** -- 60 points evenly on a circle in a random 2-plane of 10-D; B bends the ring by a
  smooth random deformation of amplitude sigma (harmonics 2 and 3 of the angle, in random
  directions): the large distances change, each point's neighbours do not.

Both B's then go through a monotone nonlinear distortion -- a random rotation followed by an
element-wise ``tanh(2 z / std(z))``, a saturating unit -- plus isotropic per-sample noise (5 % of B's
spread). Euclidean RDMs throughout; Spearman comparator (as plain RSA). For each geometry-noise
level sigma and 10 fixed seeds it measures

* RSA(A, B) -- the geometry;
* tRSA(A, B) at the default, topological bounds (0.05, 0.15) and at (0.1, 0.5), nearer the geometry;
* a control: tRSA(A, B') with B' = B in a shuffled sample order (a different topology), which
  must stay near 0 -- a high tRSA is earned, not an artefact of saturating the RDM.

It also reports a sweep of the per-sample noise alone (no geometry change), where the transform
has nothing to exploit. Writes bench/results/topological_rsa.txt and the README figure
assets/topological_rsa.png.

    BROWSER_PATH=/usr/bin/chromium .venv/bin/python bench/topological_rsa.py [--no-png]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from scipy.stats import ortho_group

from engine.probes.representations import rsa, topological_rsa

ROOT = Path(__file__).resolve().parents[1]
DIM, CLUSTERS, PER_CLUSTER, RING_POINTS = 10, 6, 10, 60
GAIN, SAMPLE_NOISE = 2.0, 0.05
SIGMAS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0)
SEEDS = tuple(range(10))
WIDE_BOUNDS, TOPOLOGICAL_BOUNDS = (0.1, 0.5), (0.05, 0.15)  # the second is topological_rsa's default
MEASURES = ("RSA (geometry)", "tRSA, bounds (0.1, 0.5)", "tRSA, bounds (0.05, 0.15) (default)",
            "control: tRSA (0.05, 0.15), B shuffled")


def clusters_pair(seed: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """A: clustered points; B before distortion: every cluster displaced by N(0, sigma^2 I)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(CLUSTERS, DIM))
    label = np.repeat(np.arange(CLUSTERS), PER_CLUSTER)
    within = 0.15 * rng.normal(size=(len(label), DIM))
    moved = centres + sigma * rng.normal(size=centres.shape)
    return centres[label] + within, moved[label] + within


def ring_pair(seed: int, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """A: a circle in a random 2-plane; B before distortion: the circle bent by a smooth deformation."""
    rng = np.random.default_rng(seed)
    theta = 2 * np.pi * np.arange(RING_POINTS) / RING_POINTS
    plane = ortho_group.rvs(DIM, random_state=seed)[:, :2]  # (DIM, 2)
    a = np.c_[np.cos(theta), np.sin(theta)] @ plane.T  # (n, DIM)
    harmonics = np.stack([f(k * theta) for k in (2, 3) for f in (np.cos, np.sin)], 1)  # (n, 4)
    return a, a + sigma * harmonics @ (rng.normal(size=(4, DIM)) / 2)


def distort(b: np.ndarray, seed: int, noise: float = SAMPLE_NOISE) -> np.ndarray:
    """Monotone nonlinear distortion (rotation, then element-wise tanh) plus per-sample noise."""
    rng = np.random.default_rng(seed + 1000)
    z = b @ ortho_group.rvs(DIM, random_state=seed + 1)
    out = np.tanh(GAIN * z / z.std())
    return out + noise * out.std() * rng.normal(size=out.shape)


SHAPES = {"clusters": clusters_pair, "ring": ring_pair}


def measure(a: np.ndarray, b: np.ndarray, seed: int) -> list[float]:
    """The four measures of :data:`MEASURES` for one pair."""
    shuffled = b[np.random.default_rng(seed + 2000).permutation(len(b))]
    return [rsa(a, b, metric="euclidean"),
            topological_rsa(a, b, *WIDE_BOUNDS, metric="euclidean"),
            topological_rsa(a, b, *TOPOLOGICAL_BOUNDS, metric="euclidean"),
            topological_rsa(a, shuffled, *TOPOLOGICAL_BOUNDS, metric="euclidean")]


def sweep(shape: str, sigmas=SIGMAS, seeds=SEEDS) -> np.ndarray:
    """``(len(MEASURES), len(sigmas), len(seeds))``: each measure at each geometry-noise level and seed."""
    out = np.empty((len(MEASURES), len(sigmas), len(seeds)))
    for i, sigma in enumerate(sigmas):
        for j, seed in enumerate(seeds):
            a, b = SHAPES[shape](seed, sigma)
            out[:, i, j] = measure(a, distort(b, seed), seed)
    return out


def sample_noise_sweep(shape: str, noises=(0.05, 0.2, 0.4, 0.8), seeds=SEEDS) -> np.ndarray:
    """``(2, len(noises))``: mean RSA and topological tRSA when only the per-sample noise grows."""
    out = np.empty((2, len(noises), len(seeds)))
    for i, noise in enumerate(noises):
        for j, seed in enumerate(seeds):
            a, b = SHAPES[shape](seed, 0.0)
            b = distort(b, seed, noise)
            out[:, i, j] = rsa(a, b, metric="euclidean"), topological_rsa(a, b, *TOPOLOGICAL_BOUNDS,
                                                                           metric="euclidean")
    return out.mean(2)


def figure(results: dict[str, np.ndarray], sigmas=SIGMAS):
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from engine.figures.style import PALETTE, TEMPLATE

    fig = make_subplots(rows=1, cols=len(results), shared_yaxes=True, horizontal_spacing=0.06,
                        subplot_titles=[f"{k}: cluster displacement σ" if k == "clusters" else
                                        f"{k}: smooth deformation σ" for k in results])
    for c, vals in enumerate(results.values(), start=1):
        for m, name in enumerate(MEASURES):
            mean, sd = vals[m].mean(1), vals[m].std(1)
            colour = PALETTE[m]
            dash = "dot" if name.startswith("control") else None
            fig.add_trace(go.Scatter(
                x=list(sigmas) + list(sigmas)[::-1], y=list(mean + sd) + list(mean - sd)[::-1], fill="toself",
                mode="lines", fillcolor=colour, opacity=0.15, line={"width": 0}, hoverinfo="skip",
                showlegend=False),
                row=1, col=c)
            fig.add_trace(go.Scatter(x=list(sigmas), y=mean, mode="lines+markers", name=name,
                                     line={"color": colour, "dash": dash}, legendgroup=name, showlegend=c == 1),
                          row=1, col=c)
        fig.update_xaxes(title_text="geometry noise σ", row=1, col=c)
    fig.update_yaxes(title_text="similarity of A and B (mean ± sd, 10 seeds)", range=[-0.1, 1.02], row=1, col=1)
    fig.update_layout(template=TEMPLATE, width=1000, height=440,
                      title="Topological RSA stays stable while the geometry changes "
                            "(B = tanh(rotated A + geometry noise) + 5 % sample noise)",
                      legend={"orientation": "h", "y": -0.22, "x": 0.0})
    return fig


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "topological_rsa.txt"))
    ap.add_argument("--png", default=str(ROOT / "assets" / "topological_rsa.png"))
    ap.add_argument("--no-png", action="store_true")
    args = ap.parse_args()
    t0, c0 = time.perf_counter(), time.process_time()
    results = {shape: sweep(shape) for shape in SHAPES}
    noise_only = {shape: sample_noise_sweep(shape) for shape in SHAPES}
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    lines = [f"{len(SIGMAS)} geometry-noise levels x {len(SEEDS)} seeds x 2 shapes x 4 measures, Euclidean RDMs, "
             f"Spearman: wall {wall:.2f} s, CPU {cpu:.2f} s (plus the per-sample noise sweep)"]
    for shape, vals in results.items():
        lines += ["", f"{shape}: mean over seeds (sd) at sigma = {', '.join(map(str, SIGMAS))}"]
        lines += [f"  {name:<40} " + "  ".join(f"{m:.3f} ({s:.3f})" for m, s in zip(v.mean(1), v.std(1)))
                  for name, v in zip(MEASURES, vals)]
    for shape, vals in noise_only.items():
        lines += ["", f"{shape}, per-sample noise only (0.05, 0.2, 0.4, 0.8 of B's spread), no geometry noise:",
                  f"  RSA {' '.join(f'{v:.3f}' for v in vals[0])}   tRSA (0.05, 0.15) "
                  f"{' '.join(f'{v:.3f}' for v in vals[1])}"]
    text = "\n".join(lines)
    print(text)
    Path(args.out).write_text(text + "\n")
    if not args.no_png:
        from engine.figures.export import write_image

        t1 = time.perf_counter()
        write_image(figure(results), Path(args.png), scale=1.5)
        print(f"wrote {args.out} and {args.png} (figure {time.perf_counter() - t1:.1f} s)")


if __name__ == "__main__":
    main()
