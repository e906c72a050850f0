"""Mode-connectivity probes: paths before/after alignment, layer-wise barriers, barrier matrices, merging."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field

from engine.config import SPEC_CONFIG, Seed
from engine.nets import permutation_spec
from engine.probes.connectivity import (
    BarrierMatrix,
    Instability,
    InterpolationCurve,
    LayerwiseBarriers,
    MergeResult,
    SingularAlignment,
    align_models,
    apply_alignment,
    barrier_matrix,
    compare_paths,
    instability_analysis,
    layerwise_barriers,
    merge_models,
    singular_vector_alignment,
)

from ..probe_kinds import ProbeResult, register_probe
from .convert import Packed, pack, unpack

__all__ = ["PathsResult", "SingularFormat", "instability_steps"]

Align = Literal["none", "weight", "activation"]


def _endpoints(inputs) -> list:
    """Every input checkpoint, loaded and checked to hold finite weights (NaN/inf would fail later, unclearly)."""
    return [ck.require_finite() for ck in inputs.all]


class _Params(BaseModel):
    model_config = SPEC_CONFIG


class PathsParams(_Params):
    """Loss/error along the straight line A→B, naive and after each alignment, on both splits."""

    methods: tuple[Align, ...] = ("none", "weight", "activation")
    bn: tuple[Literal["running", "reset"], ...] = ("running",)
    alphas: int = Field(25, ge=3, le=201)
    seed: Seed = 0


def run_paths(inputs, p: PathsParams, progress) -> ProbeResult:
    a, b = _endpoints(inputs)
    progress(0.1, f"aligning ({', '.join(p.methods)}) and interpolating")
    comparison = compare_paths(a.model, a.state, b.state, a.dataset, methods=p.methods, bn=p.bn,
                               splits=("train", "test"), alphas=p.alphas, seed=p.seed, loss_fn=a.loss_fn)
    alignments = {m: {"iterations": al.iterations, "objective": al.objective, "seconds": al.seconds}
                  for m, al in comparison.alignments.items()}
    return PathsResult(curves=tuple(comparison.curves.values()), check_max_diff=comparison.check_max_diff,
                       alignments=alignments).to_stored()


@dataclass(frozen=True)
class PathsResult:
    """``connectivity.paths``: the loss/error curves A → B per alignment method and split.

    Stored as ``curves`` (one summary per curve) and arrays ``curveNN.<field>``.
    """

    curves: tuple[InterpolationCurve, ...]
    check_max_diff: dict[str, float]  # alignment method -> largest output change of the permuted B
    alignments: dict[str, dict[str, Any]]  # method -> iterations, objective, seconds

    def to_stored(self) -> ProbeResult:
        summary = {"curves": [], "check_max_diff": self.check_max_diff, "alignments": self.alignments}
        arrays = {}
        for i, curve in enumerate(self.curves):
            s, arr = pack(curve, f"curve{i:02d}.")
            summary["curves"].append(s)
            arrays.update(arr)
        return ProbeResult(summary, arrays)

    @classmethod
    def from_stored(cls, result: ProbeResult) -> PathsResult:
        s, a = result.summary, result.arrays
        curves = tuple(unpack(InterpolationCurve, c, a, f"curve{i:02d}.") for i, c in enumerate(s["curves"]))
        return cls(curves=curves, check_max_diff=dict(s.get("check_max_diff", {})),
                   alignments=dict(s.get("alignments", {})))


class LayerwiseParams(_Params):
    """One layer (or the layers up to it) interpolated while the rest stays at A or at B (Adilova et al. 2024)."""

    align: Align = "weight"
    cumulative: bool = False
    split: Literal["train", "test"] = "train"
    alphas: int = Field(11, ge=3, le=101)
    seed: Seed = 0


def run_layerwise(inputs, p: LayerwiseParams, progress) -> ProbeResult:
    a, b = _endpoints(inputs)
    theta_b = b.state
    if p.align != "none":
        progress(0.1, f"{p.align} matching")
        alignment = align_models(a.model, a.state, b.state, a.dataset, method=p.align, seed=p.seed)
        theta_b = apply_alignment(a.model, b.state, alignment, a.dataset)  # raises if the function changed
    progress(0.3, "layer by layer")
    result = layerwise_barriers(a.model, a.state, theta_b, a.dataset, cumulative=p.cumulative, alphas=p.alphas,
                                split=p.split, loss_fn=a.loss_fn)
    stored = LAYERWISE.to_stored(result)
    stored.summary["align"] = p.align
    return stored


LAYERWISE = Packed(LayerwiseBarriers)


class MatrixParams(_Params):
    """Barriers between every pair of input checkpoints, naive and aligned, with basins."""

    align: Align = "weight"
    split: Literal["train", "test"] = "test"
    alphas: int = Field(11, ge=3, le=101)
    seed: Seed = 0


def run_matrix(inputs, p: MatrixParams, progress) -> ProbeResult:
    cks = _endpoints(inputs)
    first = cks[0]
    names = [c.ref.name or c.ref.run_id[:8] for c in cks]
    states = dict(zip(names, (c.state for c in cks)))
    result = barrier_matrix(first.model, states, first.dataset, align=p.align, alphas=p.alphas, split=p.split,
                            seed=p.seed, on_progress=lambda i, n: progress(0.1 + 0.9 * i / max(n, 1), f"pair {i}/{n}"),
                            loss_fn=first.loss_fn)
    return MATRIX.to_stored(result)


MATRIX = Packed(BarrierMatrix)


class MergeParams(_Params):
    """Merge the input models: plain or Fisher-weighted averaging, after alignment, BN reset (REPAIR)."""

    method: Literal["average", "fisher"] = "average"
    align: Align = "weight"
    bn: Literal["average", "reset"] = "reset"
    split: Literal["train", "test"] = "test"
    seed: Seed = 0


def run_merge(inputs, p: MergeParams, progress) -> ProbeResult:
    cks = _endpoints(inputs)
    progress(0.2, f"{p.method} merge after {p.align} alignment")
    result = merge_models(cks[0].model, [c.state for c in cks], cks[0].dataset, method=p.method, align=p.align,
                          bn=p.bn, split=p.split, seed=p.seed)
    return MERGE.to_stored(result)


MERGE = Packed(MergeResult, skip=("state", "alignments"))  # the merged weights are not stored


class InstabilityParams(_Params):
    """Frankle et al.'s instability: fork the run at step k into two children with other data orders."""

    n_steps: int = Field(6, ge=2, le=24, description="spawn steps, 0 and then log-spaced up to the end")
    seeds: tuple[int, int] = (1, 2)
    metric: Literal["error", "loss"] = "error"
    split: Literal["train", "test"] = "test"
    kind: Literal["max_minus_mean", "max_minus_linear", "midpoint"] = "max_minus_mean"
    alphas: int = Field(25, ge=3, le=201)


def instability_steps(total: int, n: int) -> list[int]:
    """``n`` spawn steps for a run of ``total`` steps: 0, then log-spaced up to ``total // 2``.

    Later forks leave the children too few steps to separate; the interesting change
    happens early (Frankle et al. find stability within the first few percent of training).
    """
    if total < 2:
        return [0]
    ks = np.unique(np.round(np.geomspace(1, total // 2, max(1, n - 1))).astype(int))
    return [0, *[int(k) for k in ks]]


def run_instability(inputs, p: InstabilityParams, progress) -> ProbeResult:
    ck = inputs.load(0)
    ks = instability_steps(ck.config.steps, p.n_steps)
    progress(0.02, f"re-training the parent and forking at steps {ks}")
    result = instability_analysis(ck.config, ks, seeds=p.seeds, dataset=ck.dataset, alphas=p.alphas, kind=p.kind,
                                  metric=p.metric, split=p.split,
                                  on_progress=lambda done, total: progress(done / total, f"spawned {done}/{total}"))
    return INSTABILITY.to_stored(result)


INSTABILITY = Packed(Instability, skip=("curves",))  # the per-step curves are not stored


class SingularParams(_Params):
    """Per layer, |cos| of the i-th singular vectors of A and B before and after alignment (Ito et al. 2025)."""

    align: Literal["weight", "activation"] = "weight"
    top_k: int | None = Field(None, ge=1, le=4096)
    seed: Seed = 0


_RAGGED = ("singular_values_a", "singular_values_b", "cos_left_before", "cos_left_after", "cos_right_before",
           "cos_right_after")  # one array per layer, of that layer's length


def run_singular(inputs, p: SingularParams, progress) -> ProbeResult:
    a, b = _endpoints(inputs)
    progress(0.1, f"{p.align} matching")
    alignment = align_models(a.model, a.state, b.state, a.dataset, method=p.align, seed=p.seed)
    apply_alignment(a.model, b.state, alignment, a.dataset)  # raises if the permuted B computes differently
    progress(0.6, "singular vectors of every layer")
    layers = [k for k, v in a.model.state_dict().items() if v.ndim >= 2 and v.is_floating_point()]  # model order
    result = singular_vector_alignment(a.state, b.state, alignment, permutation_spec(a.model), layers=layers,
                                       top_k=p.top_k)
    return SingularFormat.to_stored(result)


class SingularFormat:
    """The stored form of ``connectivity.singular``: a :class:`SingularAlignment`, one array per layer.

    Arrays ``<field>.NNN`` (layer NNN) for the ragged fields, ``distance_before``/``distance_after``.
    """

    @staticmethod
    def to_stored(value: SingularAlignment) -> ProbeResult:
        arrays = {f"{field}.{i:03d}": v for field in _RAGGED for i, v in enumerate(getattr(value, field))}
        arrays.update(distance_before=value.distance_before, distance_after=value.distance_after)
        return ProbeResult({"layers": list(value.layers)}, arrays)

    @staticmethod
    def from_stored(result: ProbeResult) -> SingularAlignment:
        summary, arrays = result.summary, result.arrays
        n = len(summary["layers"])
        ragged = {field: tuple(arrays[f"{field}.{i:03d}"] for i in range(n)) for field in _RAGGED}
        return SingularAlignment(layers=tuple(summary["layers"]), **ragged, distance_before=arrays["distance_before"],
                                 distance_after=arrays["distance_after"])


register_probe("connectivity.paths", run_paths, PathsParams, n_checkpoints=(2, 2),
               description="linear paths A→B before and after alignment", result=PathsResult)
register_probe("connectivity.layerwise", run_layerwise, LayerwiseParams, n_checkpoints=(2, 2),
               description="layer-wise barriers", result=LAYERWISE)
register_probe("connectivity.matrix", run_matrix, MatrixParams, n_checkpoints=(2, 24),
               description="pairwise barrier matrix with basins", result=MATRIX)
register_probe("connectivity.merge", run_merge, MergeParams, n_checkpoints=(2, 16),
               description="merge aligned models", result=MERGE)
register_probe("connectivity.instability", run_instability, InstabilityParams, n_checkpoints=(1, 1),
               description="instability to SGD noise against the spawn step (Frankle et al. 2020)", result=INSTABILITY,
               replays_training=True)
register_probe("connectivity.singular", run_singular, SingularParams, n_checkpoints=(2, 2),
               description="singular-vector agreement of A and B before and after alignment", result=SingularFormat)
