"""Loss-landscape and curvature probes: surfaces, Hessian spectrum, sharpness, intrinsic dimension,
curvature per layer."""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from engine.bounds import MAX_EVAL_SIZE
from engine.config import SPEC_CONFIG, Seed
from engine.probes.core import resolve_data
from engine.probes.landscape import (
    HessianEigs,
    IntrinsicDimension,
    PerLayerHessian,
    ProductProgress,
    Sharpness,
    SpectralDensity,
    Surface,
    TraceEstimate,
    hessian_directions,
    hessian_spectral_density,
    hessian_top_eigs,
    hessian_trace,
    intrinsic_dimension,
    loss_surface_1d,
    loss_surface_2d,
    pca_directions,
    per_layer_hessian_over_training,
    random_direction,
    sharpness_over_training,
    trajectory_plane,
)

from ..probe_kinds import ProbeResult, register_probe
from .convert import Packed, pack, unpack

__all__ = ["IntrinsicDimensionParams", "PerLayerParams", "SharpnessParams", "SpectrumParams", "SpectrumResult",
           "SurfaceParams"]


class _Params(BaseModel):
    model_config = SPEC_CONFIG


class SurfaceParams(_Params):
    """A 1D or 2D slice around the last input checkpoint."""

    directions: Literal["filter", "hessian", "pca"] = "filter"  # filter-normalized random, Hessian, PCA of trajectory
    ndim: Literal[1, 2] = 2
    resolution: int = Field(21, ge=3, le=101)
    span: float = Field(1.0, gt=0.0, le=100.0)  # grid covers [-span, span] along each direction (random/Hessian)
    split: Literal["train", "test"] = "train"
    # data points the loss averages over (None: the whole split)
    n_samples: int | None = Field(2000, ge=1, le=MAX_EVAL_SIZE)
    bn: Literal["running", "batch"] = "running"
    seed: Seed = 0


def points_progress(progress, label: str, *, start: float, end: float):
    """``progress(done, total)`` for grid points -> the job's ``progress(fraction, message)`` with an ETA;
    the job's progress checks for cancellation, so a cancelled surface stops after the current point."""
    began = time.perf_counter()

    def report(done: int, total: int) -> None:
        elapsed = time.perf_counter() - began
        left = elapsed / done * (total - done) if done else float("nan")
        eta = f"about {left:.0f} s left" if done else "ETA after the first point"
        progress(start + (end - start) * done / max(1, total), f"{label}: point {done}/{total}; {elapsed:.0f} s, {eta}")

    return report


def _data(ck, split: str, n_samples: int | None, seed: int):
    return resolve_data(ck.dataset, split, n_samples=n_samples, seed=seed)


def run_surface(inputs, p: SurfaceParams, progress) -> ProbeResult:
    ck = inputs.load(len(inputs) - 1)
    data = _data(ck, p.split, p.n_samples, p.seed)
    kw = dict(split=p.split, bn=p.bn, buffers=ck.buffers, loss_fn=ck.loss_fn)
    span: tuple = (-p.span, p.span)
    trajectory = plane = None
    progress(0.05, "directions")
    if p.directions == "filter":
        d1 = random_direction(ck.params, seed=p.seed)
        d2 = random_direction(ck.params, seed=p.seed + 1)
    elif p.directions == "hessian":
        d1, d2 = hessian_directions(ck.model, ck.params, data, seed=p.seed, buffers=ck.buffers,
                                    loss_fn=ck.loss_fn)
    else:
        if len(inputs) < 3:
            raise ValueError("PCA directions need at least 3 checkpoints of the run's trajectory")
        path = [inputs.load(i).params for i in range(len(inputs))]
        pca = pca_directions(path, model=ck.model)
        d1, d2 = pca.d1, pca.d2
        plane = trajectory_plane(path, d1, d2, model=ck.model)  # how far each checkpoint is off the plane
        trajectory = pca.coords
        lo, hi = trajectory.min(0), trajectory.max(0)
        pad = 0.25 * float((hi - lo).max() or 1.0)
        span = ((float(lo[0] - pad), float(hi[0] + pad)), (float(lo[1] - pad), float(hi[1] + pad)))
    grid = f"{p.resolution}{'×' + str(p.resolution) if p.ndim == 2 else ''} grid"
    progress(0.2, grid)
    kw["progress"] = points_progress(progress, grid, start=0.2, end=0.99)
    if p.ndim == 1:
        surface = loss_surface_1d(ck.model, ck.params, data, d1, span=span if p.directions != "pca" else span[0],
                                  resolution=p.resolution, **kw)
    else:
        surface = loss_surface_2d(ck.model, ck.params, data, d1, d2, span=span, resolution=p.resolution,
                                  trajectory=trajectory, **kw)
    if plane is not None:
        surface = dataclasses.replace(surface, off_plane=plane.off_plane, trajectory_distance=plane.distance,
                                      plane_explained=plane.explained)
    return SURFACE.to_stored(surface)


SURFACE = Packed(Surface, optional=("betas",))  # a 1-D surface has no betas (stored empty in older stores)


class SpectrumParams(_Params):
    """Hessian spectrum of one checkpoint: top eigenvalues (Lanczos), trace (Hutchinson), density (SLQ)."""

    k: int = Field(5, ge=1, le=50)
    n_samples: int | None = Field(1000, ge=1, le=MAX_EVAL_SIZE)
    n_probes: int = Field(50, ge=2, le=2000)
    n_iter: int = Field(64, ge=4, le=500)
    n_runs: int = Field(4, ge=1, le=64)
    split: Literal["train", "test"] = "train"
    seed: Seed = 0


def run_spectrum(inputs, p: SpectrumParams, progress) -> ProbeResult:
    ck = inputs.load(len(inputs) - 1)
    data = _data(ck, p.split, p.n_samples, p.seed)
    kw = dict(buffers=ck.buffers, seed=p.seed, loss_fn=ck.loss_fn)
    progress(0.05, f"top {p.k} eigenvalues (Lanczos)")
    top = hessian_top_eigs(ck.model, ck.params, data, k=p.k,
                           progress=lambda f, m: progress(0.05 + 0.35 * f, m), **kw)
    progress(0.4, f"trace ({p.n_probes} Hutchinson probes)")
    trace = hessian_trace(ck.model, ck.params, data, n_probes=p.n_probes, **kw, callback=ProductProgress(
        progress, p.n_probes, start=0.4, end=0.7, label=f"trace ({p.n_probes} Hutchinson probes)"))
    label = f"density (SLQ, {p.n_runs} runs × {p.n_iter} steps)"
    progress(0.7, label)
    density = hessian_spectral_density(ck.model, ck.params, data, n_iter=p.n_iter, n_runs=p.n_runs, **kw,
                                       callback=ProductProgress(progress, p.n_runs * p.n_iter, start=0.7, end=1.0,
                                                                label=label))
    return SpectrumResult(top=top, trace=trace, density=density).to_stored()


@dataclass(frozen=True)
class SpectrumResult:
    """``curvature.spectrum``: top eigenvalues (Lanczos), trace (Hutchinson) and density (SLQ) of one Hessian.

    Stored flat with the prefixes ``top.``, ``trace.``, ``density.``; the eigenvectors are not
    stored (``top.eigenvectors`` loads empty).
    """

    top: HessianEigs
    trace: TraceEstimate
    density: SpectralDensity

    _PARTS = (("top", HessianEigs, ("eigenvectors",)), ("trace", TraceEstimate, ()),
              ("density", SpectralDensity, ()))

    def to_stored(self) -> ProbeResult:
        summary, arrays = {}, {}
        for name, _, skip in self._PARTS:
            s, a = pack(getattr(self, name), f"{name}.", skip=skip)
            summary.update(s)
            arrays.update(a)
        return ProbeResult(summary, arrays)

    @classmethod
    def from_stored(cls, result: ProbeResult) -> SpectrumResult:
        return cls(**{name: unpack(kind, result.summary, result.arrays, f"{name}.") for name, kind, _ in cls._PARTS})


class SharpnessParams(_Params):
    """Top Hessian eigenvalue at every input checkpoint (a run's trajectory), warm-started."""

    k: int = Field(1, ge=1, le=10)
    n_samples: int | None = Field(1000, ge=1, le=MAX_EVAL_SIZE)
    split: Literal["train", "test"] = "train"
    seed: Seed = 0


def _over_training(probe, inputs, p, progress, *, loading: float, **options):
    """Run ``probe`` (a ``…_over_training`` curvature function) on every input checkpoint.

    The checkpoints are loaded first (progress up to ``loading``), the data subset is drawn
    once from the first one's dataset, and the checkpoints' steps and learning rates go with
    them (for the ``2 / lr`` line); ``options`` are the probe's own parameters.
    """
    cks = []
    for i in range(len(inputs)):
        cks.append(inputs.load(i))
        progress(loading * (i + 1) / len(inputs), f"loading checkpoint {i + 1}/{len(inputs)}")
    first = cks[0]
    data = _data(first, p.split, p.n_samples, p.seed)

    def report(fraction: float, message: str) -> None:
        progress(loading + (1.0 - loading) * fraction, message)

    return probe(first.model, [c.state for c in cks], data, steps=[c.ref.step for c in cks],
                 lr=[c.lr for c in cks], seed=p.seed, progress=report, **options)


def run_sharpness(inputs, p: SharpnessParams, progress) -> ProbeResult:
    return SHARPNESS.to_stored(_over_training(sharpness_over_training, inputs, p, progress, loading=0.3, k=p.k))


SHARPNESS = Packed(Sharpness)


class IntrinsicDimensionParams(_Params):
    """Train in random subspaces of these dimensions from the run's initialisation (Li et al. 2018)."""

    dims: tuple[int, ...] = (2, 5, 10, 20, 50, 100, 200)
    seeds: tuple[int, ...] = (0,)
    n_steps: int = Field(300, ge=1, le=100_000)
    lr: float = Field(0.01, gt=0.0, le=10.0)
    n_samples: int | None = Field(2000, ge=1, le=MAX_EVAL_SIZE)

    @model_validator(mode="after")
    def _dims_positive(self):
        if not self.dims or any(d < 1 for d in self.dims):
            raise ValueError(f"dims must be positive integers; got {list(self.dims)}")
        return self


def run_intrinsic_dimension(inputs, p: IntrinsicDimensionParams, progress) -> ProbeResult:
    ck = inputs.load(0)
    train = _data(ck, "train", p.n_samples, 0)
    test = _data(ck, "test", p.n_samples, 0)
    progress(0.05, f"training in {len(p.dims)} subspaces × {len(p.seeds)} seeds")
    result = intrinsic_dimension(ck.model, ck.params, train, dims=list(p.dims), seeds=list(p.seeds),
                                 n_steps=p.n_steps, lr=p.lr, eval_data=test, loss_fn=ck.loss_fn)
    return INTRINSIC_DIMENSION.to_stored(result)


INTRINSIC_DIMENSION = Packed(IntrinsicDimension)


# code_version bumped when checkpoints began to load in the model's parameter order (not the file's, which
# changed from read to read): the seeded draws over the parameters (random directions, Lanczos starts, Hutchinson
# probes, random subspaces) follow that order, so results stored before were for other draws: recomputed.
register_probe("landscape.surface", run_surface, SurfaceParams, n_checkpoints=(1, None), code_version="3",
               description="1D/2D loss surface around the last checkpoint", result=SURFACE)
register_probe("curvature.spectrum", run_spectrum, SpectrumParams, n_checkpoints=(1, 1), code_version="2",
               description="Hessian top eigenvalues, trace and spectral density", result=SpectrumResult)
register_probe("curvature.sharpness", run_sharpness, SharpnessParams, n_checkpoints=(2, None), code_version="2",
               description="top Hessian eigenvalue over training", result=SHARPNESS)
register_probe("landscape.intrinsic_dimension", run_intrinsic_dimension, IntrinsicDimensionParams, code_version="2",
               n_checkpoints=(1, 1), description="intrinsic dimension of the objective", result=INTRINSIC_DIMENSION)


class PerLayerParams(_Params):
    """Top eigenvalue and trace of each layer's diagonal Hessian block at every input checkpoint."""

    level: Literal["tensor", "layer", "block"] = "layer"  # group parameters per tensor, per layer (module) or per block
    n_samples: int | None = Field(1000, ge=1, le=MAX_EVAL_SIZE)
    n_probes: int = Field(32, ge=2, le=1000)  # Hutchinson probes per block (exact trace for smaller blocks)
    max_iter: int = Field(64, ge=2, le=500)  # Lanczos steps per block at most
    split: Literal["train", "test"] = "train"
    seed: Seed = 0


def run_per_layer(inputs, p: PerLayerParams, progress) -> ProbeResult:
    result = _over_training(per_layer_hessian_over_training, inputs, p, progress, loading=0.1, level=p.level,
                            n_probes=p.n_probes, max_iter=p.max_iter)
    return PER_LAYER.to_stored(result)


PER_LAYER = Packed(PerLayerHessian)

# code_version "2": its block draws follow the parameter order, as for the kinds above
register_probe("curvature.per_layer", run_per_layer, PerLayerParams, n_checkpoints=(1, None), code_version="2",
               description="top eigenvalue and trace of each layer's diagonal Hessian block", result=PER_LAYER)
