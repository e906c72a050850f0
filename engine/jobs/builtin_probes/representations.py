"""Representation probes: activations of checkpoints (stored once, reused by every view), UMAP projections."""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import BaseModel, Field

from engine.config import SPEC_CONFIG, Seed
from engine.probes.core import resolve_data
from engine.probes.representations import aligned_projection, capture_activations

from ..probe_job import ProbeResult, register_probe
from .convert import pack

__all__ = ["ActivationsParams", "ProjectionParams", "split_activations"]


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
    arrays: dict[str, np.ndarray] = {}
    layers: list[str] = []
    for i in range(len(inputs)):
        ck = inputs.load(i)
        acts = capture_activations(ck.model, ck.state, _inputs(ck, p.split), pool=p.pool,
                                   max_samples=p.max_samples, seed=p.seed)
        layers = list(acts)
        for j, t in enumerate(acts.values()):
            arrays[f"ckpt{i:03d}/layer{j:03d}"] = t.numpy()
        if i == 0:
            arrays["indices"] = acts.indices
            if acts.targets is not None:
                arrays["targets"] = acts.targets.numpy()
        progress((i + 1) / len(inputs), f"checkpoint {i + 1}/{len(inputs)}")
    steps = [r.step for r in inputs.refs]
    return ProbeResult({"layers": layers, "steps": steps, "checkpoint_ids": [r.checkpoint_id for r in inputs.refs],
                        "split": p.split, "pool": p.pool}, arrays)


def split_activations(summary: dict, arrays: dict[str, np.ndarray]) -> list[dict[str, np.ndarray]]:
    """The stored activations as one ``layer -> (N, D) array`` dict per input checkpoint."""
    out = []
    for i in range(len(summary["steps"])):
        out.append({name: arrays[f"ckpt{i:03d}/layer{j:03d}"] for j, name in enumerate(summary["layers"])})
    return out


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
    summary, arrays = pack(proj)
    if targets is not None:
        arrays["targets"] = targets
    return ProbeResult(summary, arrays)


register_probe("representations.activations", run_activations, ActivationsParams, n_checkpoints=(1, 64),
               description="pooled block outputs of checkpoints on the same samples")
register_probe("representations.projection", run_projection, ProjectionParams, n_checkpoints=(1, 64),
               description="UMAP/PCA/t-SNE of one layer, aligned across checkpoints")
