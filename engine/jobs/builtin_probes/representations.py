"""Representation probes: activations of checkpoints (stored once, reused by every view), UMAP projections."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, Field

from engine.config import SPEC_CONFIG, Seed
from engine.probes.core import resolve_data
from engine.probes.representations import AlignedProjection, aligned_projection, capture_activations

from ..probe_kinds import ProbeResult, register_probe
from .convert import pack, unpack

__all__ = ["ActivationsParams", "ActivationsResult", "ProjectionParams", "ProjectionResult"]


class ActivationsParams(BaseModel):
    """Pooled block outputs of every input checkpoint on the same samples."""

    model_config = SPEC_CONFIG

    split: Literal["train", "test"] = "test"
    max_samples: int = Field(1000, ge=4, le=20_000)
    pool: Literal["mean", "flatten"] = "mean"
    seed: Seed = 0


def _inputs(ck, split: str):
    return resolve_data(ck.dataset, split)


def run_activations(inputs, p: ActivationsParams, progress) -> ProbeResult:
    activations: list[dict[str, np.ndarray]] = []
    indices, targets = np.empty(0, dtype=np.int64), None
    for i in range(len(inputs)):
        ck = inputs.load(i)
        acts = capture_activations(ck.model, ck.state, _inputs(ck, p.split), pool=p.pool,
                                   max_samples=p.max_samples, seed=p.seed)
        activations.append({name: t.numpy() for name, t in acts.items()})
        if i == 0:
            indices = acts.indices
            targets = acts.targets.numpy() if acts.targets is not None else None
        progress((i + 1) / len(inputs), f"checkpoint {i + 1}/{len(inputs)}")
    refs = inputs.refs
    return ActivationsResult(layers=tuple(activations[-1]) if activations else (), steps=tuple(r.step for r in refs),
                             checkpoint_ids=tuple(r.checkpoint_id for r in refs), split=p.split, pool=p.pool,
                             activations=tuple(activations), indices=indices, targets=targets).to_stored()


@dataclass(frozen=True)
class ActivationsResult:
    """``representations.activations``: pooled block outputs of each input checkpoint on the same samples.

    Stored as arrays ``ckptIII/layerJJJ`` (checkpoint i, layer j), ``indices`` and, with labels,
    ``targets``; the summary holds the names.
    """

    layers: tuple[str, ...]
    steps: tuple[int, ...]  # of each input checkpoint
    checkpoint_ids: tuple[str, ...]
    split: str
    pool: str
    activations: tuple[dict[str, np.ndarray], ...]  # per checkpoint: layer -> (N, D)
    indices: np.ndarray  # the samples' rows in the split, (N,)
    targets: np.ndarray | None = None  # their labels (N,) when the data set has them

    def to_stored(self) -> ProbeResult:
        arrays = {f"ckpt{i:03d}/layer{j:03d}": acts[name] for i, acts in enumerate(self.activations)
                  for j, name in enumerate(self.layers)}
        arrays["indices"] = self.indices
        if self.targets is not None:
            arrays["targets"] = self.targets
        return ProbeResult({"layers": list(self.layers), "steps": list(self.steps),
                            "checkpoint_ids": list(self.checkpoint_ids), "split": self.split, "pool": self.pool},
                           arrays)

    @classmethod
    def from_stored(cls, result: ProbeResult) -> ActivationsResult:
        s, a = result.summary, result.arrays
        layers = tuple(s["layers"])
        acts = tuple({name: a[f"ckpt{i:03d}/layer{j:03d}"] for j, name in enumerate(layers)}
                     for i in range(len(s["steps"])))
        return cls(layers=layers, steps=tuple(s["steps"]), checkpoint_ids=tuple(s.get("checkpoint_ids", ())),
                   split=s.get("split", "test"), pool=s.get("pool", "mean"), activations=acts,
                   indices=a.get("indices", np.empty(0, dtype=np.int64)), targets=a.get("targets"))


class ProjectionParams(BaseModel):
    """A 2-D projection of one layer's features at every input checkpoint, aligned across checkpoints."""

    model_config = SPEC_CONFIG

    layer: str
    method: Literal["umap", "pca", "tsne"] = "umap"
    split: Literal["train", "test"] = "test"
    max_samples: int = Field(1000, ge=10, le=20_000)
    seed: Seed = 0


def run_projection(inputs, p: ProjectionParams, progress) -> ProbeResult:
    features, targets = [], None
    for i in range(len(inputs)):
        ck = inputs.load(i)
        acts = capture_activations(ck.model, ck.state, _inputs(ck, p.split), layers=None, max_samples=p.max_samples,
                                   seed=p.seed)
        if p.layer not in acts:
            raise ValueError(f"layer {p.layer!r} is not one of the model's layers {list(acts)}")
        features.append(acts[p.layer].numpy())
        targets = acts.targets.numpy() if acts.targets is not None else None
        progress(0.5 * (i + 1) / len(inputs), f"features of checkpoint {i + 1}/{len(inputs)}")
    progress(0.55, f"{p.method} over {len(features)} checkpoints")
    with torch.no_grad():
        proj = aligned_projection(features, p.method, seed=p.seed, labels=targets,
                                  checkpoint_labels=[f"step {r.step}" for r in inputs.refs])
    return ProjectionResult(projection=proj, targets=targets).to_stored()


@dataclass(frozen=True)
class ProjectionResult:
    """``representations.projection``: the aligned projection, and the samples' labels when known.

    Stored flat (the projection's fields) plus the array ``targets``.
    """

    projection: AlignedProjection
    targets: np.ndarray | None = None

    def to_stored(self) -> ProbeResult:
        summary, arrays = pack(self.projection)
        if self.targets is not None:
            arrays["targets"] = self.targets
        return ProbeResult(summary, arrays)

    @classmethod
    def from_stored(cls, result: ProbeResult) -> ProjectionResult:
        return cls(projection=unpack(AlignedProjection, result.summary, result.arrays),
                   targets=result.arrays.get("targets"))


register_probe("representations.activations", run_activations, ActivationsParams, n_checkpoints=(1, 64),
               description="pooled block outputs of checkpoints on the same samples", result=ActivationsResult)
register_probe("representations.projection", run_projection, ProjectionParams, n_checkpoints=(1, 64),
               description="UMAP/PCA/t-SNE of one layer, aligned across checkpoints", result=ProjectionResult)
