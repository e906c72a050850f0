"""Zoo-map probes: ``zoo.distance`` (one distance between one pair of models) and ``zoo.umap``.

A zoo's map is a set of ``zoo.distance`` probes, one per pair per distance, so adding models
to a zoo computes only the pairs they bring, and a pair asked by anyone is computed once.
:mod:`engine.jobs.zoo` computes many pairs in one job (each model loaded once) and stores
each under exactly the key a single ``zoo.distance`` request has.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field, model_validator

from engine.config import SPEC_CONFIG, Seed
from engine.probes.zoo import (
    WEIGHT_SPACE,
    ModelEmbedding,
    embed_models,
    metric_label,
    model_view,
    pair_distances,
)

from ..probe_kinds import ProbeResult, register_probe

__all__ = ["PairDistance", "ZooDistanceParams", "ZooUmapParams", "distance_views", "pair_result"]

Metric = Literal["weight", "barrier", "cka", "procrustes", "disagreement"]
_DEFAULTS = {"align": "weight", "alphas": 11, "max_samples": 500, "shape_alpha": 1.0}
_USES = {  # the settings each distance depends on (the others are reset, so equal requests share a key)
    "weight": ("align",), "barrier": ("align", "alphas"), "cka": ("max_samples",),
    "procrustes": ("max_samples", "shape_alpha"), "disagreement": (),
}


class ZooDistanceParams(BaseModel):
    """One distance between two models: which, and the settings it depends on."""

    model_config = SPEC_CONFIG

    metric: Metric
    align: Literal["weight", "none"] = "weight"  # weight and barrier: weight matching, or none (naive)
    split: Literal["train", "test"] = "test"  # the data every distance is measured on
    alphas: int = Field(11, ge=3, le=101)  # barrier: points on the path, endpoints included
    max_samples: int = Field(500, ge=10, le=20_000)  # cka/procrustes: rows whose activations are compared
    shape_alpha: float = Field(1.0, ge=0.0, le=1.0)  # procrustes: whitening (1 = none; 0 = CCA)
    seed: Seed = 0

    @model_validator(mode="before")
    @classmethod
    def _canonical(cls, data: Any) -> Any:
        """Settings a distance does not use take their defaults, so they never split the cache."""
        if isinstance(data, dict) and data.get("metric") in _USES:
            used = _USES[data["metric"]]
            data = {**data, **{k: v for k, v in _DEFAULTS.items() if k not in used}}
        return data


def distance_views(ck, p: ZooDistanceParams):
    """The model view of a loaded checkpoint that ``p``'s distance needs."""
    return model_view(ck.model, ck.state, ck.dataset, split=p.split, max_samples=p.max_samples, seed=p.seed,
                      activations=p.metric in ("cka", "procrustes"))


@dataclass(frozen=True)
class PairDistance:
    """``zoo.distance``: one distance between two models (``value`` None when it could not be computed)."""

    metric: str
    value: float | None
    description: str
    error: str | None = None

    def to_stored(self) -> ProbeResult:
        return ProbeResult({"metric": self.metric, "value": self.value, "description": self.description,
                            "error": self.error})

    @classmethod
    def from_stored(cls, result: ProbeResult) -> PairDistance:
        s = result.summary
        return cls(metric=s["metric"], value=s.get("value"), description=s.get("description", ""),
                   error=s.get("error"))


def pair_result(metric: str, align: str, value: float | None, error: str | None = None) -> PairDistance:
    if value is not None and not math.isfinite(value):
        value, error = None, error or f"the {metric} distance is not finite ({value})"
    return PairDistance(metric, value, metric_label(metric, align), error)


def run_zoo_distance(inputs, p: ZooDistanceParams, progress) -> ProbeResult:
    a, b = inputs.load(0), inputs.load(1)
    if a.ref.checkpoint_id > b.ref.checkpoint_id:  # B is aligned to A in one order, as the zoo.pairs job does
        a, b = b, a
    progress(0.1, f"{p.metric} distance")
    va, vb = distance_views(a, p), distance_views(b, p)
    value = pair_distances(a.model, va, vb, a.dataset, (p.metric,), align=p.align, split=p.split, alphas=p.alphas,
                           shape_alpha=p.shape_alpha, seed=p.seed)[p.metric]
    return pair_result(p.metric, p.align, value).to_stored()


class ZooUmapParams(BaseModel):
    """UMAP of a precomputed distance matrix between the input checkpoints (in their order)."""

    model_config = SPEC_CONFIG

    distances: list[list[float]]  # (K, K), symmetric, no missing pairs
    metric: str = ""
    seed: Seed = 0

    @model_validator(mode="after")
    def _square(self):
        k = len(self.distances)
        if any(len(row) != k for row in self.distances):
            raise ValueError(f"distances must be a square K x K list of rows; got {k} rows of lengths "
                             f"{sorted({len(r) for r in self.distances})}")
        return self


@dataclass(frozen=True)
class UmapResult:
    """``zoo.umap``: the map coordinates, one row per input checkpoint."""

    embedding: ModelEmbedding

    def to_stored(self) -> ProbeResult:
        e = self.embedding
        return ProbeResult({"labels": list(e.labels), "method": e.method, "metric": e.metric}, {"coords": e.coords})

    @classmethod
    def from_stored(cls, result: ProbeResult) -> UmapResult:
        s = result.summary
        return cls(ModelEmbedding(tuple(s["labels"]), np.asarray(result.arrays["coords"]), s["method"],
                                  float("nan"), s.get("metric", "")))


def run_zoo_umap(inputs, p: ZooUmapParams, progress) -> ProbeResult:
    if len(p.distances) != len(inputs):
        raise ValueError(f"the matrix has {len(p.distances)} rows for {len(inputs)} checkpoints; one row each")
    progress(0.2, f"UMAP of {len(inputs)} models")
    emb = embed_models(np.asarray(p.distances, dtype=np.float64), "umap", seed=p.seed)
    labels = tuple(r.checkpoint_id for r in inputs.refs)
    return UmapResult(ModelEmbedding(labels, emb.coords, "umap", float("nan"), p.metric)).to_stored()


assert set(_USES) == set(Metric.__args__) and set(WEIGHT_SPACE) <= set(_USES)  # one list of distances

register_probe("zoo.distance", run_zoo_distance, ZooDistanceParams, n_checkpoints=(2, 2),
               description="one distance between two models (weights, barrier, CKA, shape, disagreement)",
               result=PairDistance)
register_probe("zoo.umap", run_zoo_umap, ZooUmapParams, n_checkpoints=(4, 512),
               description="UMAP of the zoo map's precomputed distances", result=UmapResult)
