"""Mode-connectivity probes: paths before/after alignment, layer-wise barriers, barrier matrices, merging."""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import BaseModel, Field

from engine.config import SPEC_CONFIG, Seed
from engine.nets import permutation_spec
from engine.probes.connectivity import (
    Instability,
    InterpolationCurve,
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

from ..probe_job import ProbeResult, register_probe
from .convert import pack, unpack

__all__ = ["curves_from_result", "instability_from_result", "instability_steps", "singular_from_result"]

Align = Literal["none", "weight", "activation"]


class _Params(BaseModel):
    model_config = SPEC_CONFIG


class PathsParams(_Params):
    """Loss/error along the straight line A→B, naive and after each alignment, on both splits."""

    methods: tuple[Align, ...] = ("none", "weight", "activation")
    bn: tuple[Literal["running", "reset"], ...] = ("running",)
    alphas: int = Field(25, ge=3, le=201)
    seed: Seed = 0


def run_paths(inputs, p: PathsParams, progress) -> ProbeResult:
    a, b = inputs.load(0), inputs.load(1)
    progress(0.1, f"aligning ({', '.join(p.methods)}) and interpolating")
    comparison = compare_paths(a.model, a.state, b.state, a.dataset, methods=p.methods, bn=p.bn,
                               splits=("train", "test"), alphas=p.alphas, seed=p.seed)
    summary = {"curves": [], "check_max_diff": comparison.check_max_diff,
               "alignments": {m: {"iterations": al.iterations, "objective": al.objective, "seconds": al.seconds}
                              for m, al in comparison.alignments.items()}}
    arrays = {}
    for i, curve in enumerate(comparison.curves.values()):
        s, arr = pack(curve, f"curve{i:02d}.")
        summary["curves"].append(s)
        arrays.update(arr)
    return ProbeResult(summary, arrays)


def curves_from_result(summary: dict, arrays: dict) -> list[InterpolationCurve]:
    """The stored curves of a ``connectivity.paths`` result."""
    return [unpack(InterpolationCurve, s, arrays, f"curve{i:02d}.") for i, s in enumerate(summary["curves"])]


class LayerwiseParams(_Params):
    """One layer (or the layers up to it) interpolated while the rest stays at A or at B (Adilova et al. 2024)."""

    align: Align = "weight"
    cumulative: bool = False
    split: Literal["train", "test"] = "train"
    alphas: int = Field(11, ge=3, le=101)
    seed: Seed = 0


def run_layerwise(inputs, p: LayerwiseParams, progress) -> ProbeResult:
    a, b = inputs.load(0), inputs.load(1)
    theta_b = b.state
    if p.align != "none":
        progress(0.1, f"{p.align} matching")
        alignment = align_models(a.model, a.state, b.state, a.dataset, method=p.align, seed=p.seed)
        theta_b = apply_alignment(a.model, b.state, alignment, a.dataset)  # raises if the function changed
    progress(0.3, "layer by layer")
    result = layerwise_barriers(a.model, a.state, theta_b, a.dataset, cumulative=p.cumulative, alphas=p.alphas,
                                split=p.split)
    summary, arrays = pack(result)
    summary["align"] = p.align
    return ProbeResult(summary, arrays)


class MatrixParams(_Params):
    """Barriers between every pair of input checkpoints, naive and aligned, with basins."""

    align: Align = "weight"
    split: Literal["train", "test"] = "test"
    alphas: int = Field(11, ge=3, le=101)
    seed: Seed = 0


def run_matrix(inputs, p: MatrixParams, progress) -> ProbeResult:
    cks = inputs.all
    first = cks[0]
    names = [c.ref.name or c.ref.run_id[:8] for c in cks]
    states = dict(zip(names, (c.state for c in cks)))
    result = barrier_matrix(first.model, states, first.dataset, align=p.align, alphas=p.alphas, split=p.split,
                            seed=p.seed, on_progress=lambda i, n: progress(0.1 + 0.9 * i / max(n, 1), f"pair {i}/{n}"))
    summary, arrays = pack(result)
    return ProbeResult(summary, arrays)


class MergeParams(_Params):
    """Merge the input models: plain or Fisher-weighted averaging, after alignment, BN reset (REPAIR)."""

    method: Literal["average", "fisher"] = "average"
    align: Align = "weight"
    bn: Literal["average", "reset"] = "reset"
    split: Literal["train", "test"] = "test"
    seed: Seed = 0


def run_merge(inputs, p: MergeParams, progress) -> ProbeResult:
    cks = inputs.all
    progress(0.2, f"{p.method} merge after {p.align} alignment")
    result = merge_models(cks[0].model, [c.state for c in cks], cks[0].dataset, method=p.method, align=p.align,
                          bn=p.bn, split=p.split, seed=p.seed)
    summary, arrays = pack(result, skip=("state", "alignments"))
    return ProbeResult(summary, arrays)


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
    summary, arrays = pack(result, skip=("curves",))
    return ProbeResult(summary, arrays)


def instability_from_result(summary: dict, arrays: dict) -> Instability:
    """The stored result of a ``connectivity.instability`` probe (without the per-step curves)."""
    return unpack(Instability, summary, arrays)


class SingularParams(_Params):
    """Per layer, |cos| of the i-th singular vectors of A and B before and after alignment (Ito et al. 2025)."""

    align: Literal["weight", "activation"] = "weight"
    top_k: int | None = Field(None, ge=1, le=4096)
    seed: Seed = 0


_RAGGED = ("singular_values_a", "singular_values_b", "cos_left_before", "cos_left_after", "cos_right_before",
           "cos_right_after")  # one array per layer, of that layer's length


def run_singular(inputs, p: SingularParams, progress) -> ProbeResult:
    a, b = inputs.load(0), inputs.load(1)
    progress(0.1, f"{p.align} matching")
    alignment = align_models(a.model, a.state, b.state, a.dataset, method=p.align, seed=p.seed)
    apply_alignment(a.model, b.state, alignment, a.dataset)  # raises if the permuted B computes differently
    progress(0.6, "singular vectors of every layer")
    layers = [k for k, v in a.model.state_dict().items() if v.ndim >= 2 and v.is_floating_point()]  # model order
    result = singular_vector_alignment(a.state, b.state, alignment, permutation_spec(a.model), layers=layers,
                                       top_k=p.top_k)
    arrays = {f"{field}.{i:03d}": v for field in _RAGGED for i, v in enumerate(getattr(result, field))}
    arrays.update(distance_before=result.distance_before, distance_after=result.distance_after)
    return ProbeResult({"layers": list(result.layers)}, arrays)


def singular_from_result(summary: dict, arrays: dict) -> SingularAlignment:
    """The stored result of a ``connectivity.singular`` probe."""
    n = len(summary["layers"])
    ragged = {field: tuple(arrays[f"{field}.{i:03d}"] for i in range(n)) for field in _RAGGED}
    return SingularAlignment(tuple(summary["layers"]), **ragged, distance_before=arrays["distance_before"],
                             distance_after=arrays["distance_after"])


register_probe("connectivity.paths", run_paths, PathsParams, n_checkpoints=(2, 2),
               description="linear paths A→B before and after alignment")
register_probe("connectivity.layerwise", run_layerwise, LayerwiseParams, n_checkpoints=(2, 2),
               description="layer-wise barriers")
register_probe("connectivity.matrix", run_matrix, MatrixParams, n_checkpoints=(2, 24),
               description="pairwise barrier matrix with basins")
register_probe("connectivity.merge", run_merge, MergeParams, n_checkpoints=(2, 16),
               description="merge aligned models")
register_probe("connectivity.instability", run_instability, InstabilityParams, n_checkpoints=(1, 1),
               description="instability to SGD noise against the spawn step (Frankle et al. 2020)")
register_probe("connectivity.singular", run_singular, SingularParams, n_checkpoints=(2, 2),
               description="singular-vector agreement of A and B before and after alignment")
