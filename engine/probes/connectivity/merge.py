"""Merging models: weight averaging after alignment, Fisher-weighted averaging, BN reset.

Averaging the weights of independently trained networks only works once their units
are lined up: :func:`merge_models` aligns every member to a reference member
(weight or activation matching; each permutation checked to keep the member's
function), averages -- uniformly or weighted by each member's diagonal Fisher
information -- and optionally recomputes BatchNorm statistics for the merged weights
(REPAIR's reset). The merged state is a complete ``state_dict`` that can be stored
and evaluated like any checkpoint.

Diagonal Fisher (:func:`diagonal_fisher`) is the *exact* expectation over the model's
own predictive distribution, not a sample of labels:
``F = (1/N) sum_n sum_c p(c|x_n) (d log p(c|x_n) / d theta)^2`` for classification and
``F = (1/N) sum_n sum_k (d f_k(x_n) / d theta)^2`` for regression (unit-variance Gaussian).
Fisher merging sets ``theta = sum_i lambda_i F_i theta_i / sum_i lambda_i F_i`` elementwise,
with each ``F_i`` optionally normalised to unit L2 norm and floored.

References
----------
M. Matena and C. Raffel, "Merging Models with Fisher-Weighted Averaging", NeurIPS 2022.
S. Ainsworth, J. Hayase and S. Srinivasa, "Git Re-Basin", ICLR 2023 (merging aligned models).
K. Jordan et al., "REPAIR", ICLR 2023 (BatchNorm reset after merging).
M. Wortsman et al., "Model soups", ICML 2022 (uniform weight averaging).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from engine.nets import permutation_spec
from engine.probes.connectivity.align import Alignment, apply_alignment
from engine.probes.connectivity.lmc import align_models
from engine.probes.core import (
    ParamLayout,
    bn_reset_batches,
    evaluate_points,
    functional_module,
    has_batchnorm,
    reset_bn_stats,
    resolve_data,
    split_state,
)

__all__ = ["MergeResult", "average_states", "diagonal_fisher", "fisher_merge", "merge_models"]


def _check_weights(weights, n: int) -> np.ndarray:
    w = np.full(n, 1.0 / n) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (n,) or np.any(w < 0) or not w.sum() > 0:
        raise ValueError(f"weights must be {n} non-negative numbers with a positive sum; "
                         f"got {np.asarray(weights).tolist()}")
    return w / w.sum()


def average_states(states: Sequence[Mapping[str, Tensor]], weights: Sequence[float] | None = None) -> dict[str, Tensor]:
    """Weighted average of state dicts; integer tensors (``num_batches_tracked``) come from the first.

    Parameters
    ----------
    states : sequence of dict[str, Tensor]
        Same keys and shapes.
    weights : sequence of float, optional
        Non-negative, normalised to sum to one; uniform by default.
    """
    if not states:
        raise ValueError("average_states: expected at least one state, got 0")
    w = _check_weights(weights, len(states))
    out = {}
    for k, v in states[0].items():
        if not v.is_floating_point():
            out[k] = v.clone()
            continue
        out[k] = sum(float(wi) * s[k].to(v) for wi, s in zip(w, states))
    return out


@torch.no_grad()
def _fisher_batch(module, params, buffers, xb: Tensor, classification: bool) -> dict[str, Tensor]:
    def logits(p, x1):
        return functional_call(module, {**p, **buffers}, (x1[None],))[0]  # (C,)

    jac = vmap(jacrev(logits), in_dims=(None, 0))(params, xb)  # name -> (B, C, *shape) or (B, T, V, *shape)
    if not classification:
        return {k: (j**2).sum((0, 1)) for k, j in jac.items()}
    probs = torch.softmax(vmap(logits, in_dims=(None, 0))(params, xb), -1)  # (B, C) or (B, T, V)
    if probs.ndim == 3:  # a sequence model: every position is a sample, averaged as the token loss is
        n_pos = probs.shape[1]
        names = [k for k in params]
        jac = {k: jac[k].flatten(0, 1) / n_pos**0.5 for k in names}  # (B*T, V, *shape)
        probs = probs.flatten(0, 1)  # (B*T, V)
    out = {}
    for k, j in jac.items():
        flat = j.reshape(*j.shape[:2], -1)  # (B, C, S)
        g = flat - torch.einsum("bc,bcs->bs", probs, flat)[:, None]  # d log p_c = J^T (e_c - p)
        out[k] = torch.einsum("bc,bcs->s", probs, g * g).reshape(j.shape[2:])
    return out


def diagonal_fisher(
    model: nn.Module,
    theta: Mapping[str, Tensor],
    data,
    *,
    n_samples: int | None = 512,
    batch_size: int = 32,
    split: str = "train",
    seed: int = 0,
) -> dict[str, Tensor]:
    """Diagonal of the Fisher information, with the exact expectation over labels.

    Parameters
    ----------
    model : nn.Module
        The architecture, evaluated in eval mode (BatchNorm with running statistics).
    theta : dict[str, Tensor]
        State or parameter dict.
    data : pair, loader or Dataset-like
        Inputs ``x_n``; the targets only decide classification (int) versus regression.
    n_samples : int or None, default 512
        Random subset (seeded); all when None.
    batch_size : int, default 32
        Samples per ``vmap(jacrev)`` call; memory is ``batch_size * outputs * P`` floats.

    Returns
    -------
    dict[str, Tensor]
        Parameter name -> non-negative tensor of the parameter's shape, on the CPU.

    References
    ----------
    Matena & Raffel, NeurIPS 2022; Kirkpatrick et al., "Overcoming catastrophic forgetting", PNAS 2017.
    """
    x, y = resolve_data(data, split, n_samples=n_samples, seed=seed)
    params, buffers = split_state(model, theta)
    params = {k: v.to(x.device) for k, v in params.items()}
    buffers = {k: v.to(x.device) for k, v in buffers.items()}
    module = functional_module(model, "running")
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    for lo in range(0, len(x), batch_size):
        for k, f in _fisher_batch(module, params, buffers, x[lo : lo + batch_size], not y.is_floating_point()).items():
            total[k] += f
    return {k: (v / len(x)).cpu() for k, v in total.items()}


def fisher_merge(
    states: Sequence[Mapping[str, Tensor]],
    fishers: Sequence[Mapping[str, Tensor]],
    *,
    weights: Sequence[float] | None = None,
    floor: float = 1e-6,
    normalize: bool = True,
) -> dict[str, Tensor]:
    """Elementwise Fisher-weighted average ``sum_i l_i F_i theta_i / sum_i l_i F_i``.

    Parameters
    ----------
    states : sequence of dict[str, Tensor]
        Aligned members (state dicts).
    fishers : sequence of dict[str, Tensor]
        Diagonal Fisher of each member over its parameters (from :func:`diagonal_fisher`).
    weights : sequence of float, optional
        Model weights ``l_i``; uniform by default.
    floor : float, default 1e-6
        Fisher values are clamped below at ``floor`` (after normalisation), so a parameter
        no member is sensitive to gets the plain weighted average.
    normalize : bool, default True
        Divide each member's Fisher by its global L2 norm first, so no member dominates
        by scale alone.

    Returns
    -------
    dict[str, Tensor]
        Merged parameters; tensors without a Fisher (buffers) are averaged with ``weights``.

    References
    ----------
    Matena & Raffel, "Merging Models with Fisher-Weighted Averaging", NeurIPS 2022.
    """
    if len(states) != len(fishers) or not states:
        raise ValueError(f"fisher_merge needs one Fisher per state; got {len(states)} states and "
                         f"{len(fishers)} Fishers")
    if floor < 0:
        raise ValueError(f"floor must be >= 0; got {floor}")
    w = _check_weights(weights, len(states))
    scaled = []
    for f in fishers:
        norm = torch.sqrt(sum((v.double() ** 2).sum() for v in f.values())) if normalize else torch.tensor(1.0)
        scaled.append({k: (v.double() / max(float(norm), 1e-300)).clamp_min(floor) for k, v in f.items()})
    merged = average_states(states, w)
    for k in fishers[0]:
        num = sum(float(wi) * f[k] * s[k].double().cpu() for wi, f, s in zip(w, scaled, states))
        den = sum(float(wi) * f[k] for wi, f in zip(w, scaled))
        plain = merged[k].double().cpu()
        merged[k] = torch.where(den > 0, num / torch.where(den > 0, den, 1.0), plain).to(states[0][k])
    return merged


@dataclass(frozen=True)
class MergeResult:
    """A merged model and how it compares with its members.

    Attributes
    ----------
    state : dict[str, Tensor]
        Complete ``state_dict`` (parameters and buffers, CPU) of the merged model.
    method : str
        "average" or "fisher".
    align : str
        Alignment method used ("none", "weight", "activation").
    bn : str
        "average" (buffers averaged) or "reset" (recomputed for the merged weights).
    loss, error : float
        The merged model on ``split``.
    member_loss, member_error : np.ndarray, shape (N,)
        Each member on ``split``.
    weights : np.ndarray, shape (N,)
    split : str
    alignments : tuple of Alignment
        Member ``i`` -> reference (identity for the reference itself).
    seconds : float
    """

    state: dict[str, Tensor]
    method: str
    align: str
    bn: str
    loss: float
    error: float
    member_loss: np.ndarray
    member_error: np.ndarray
    weights: np.ndarray
    split: str
    alignments: tuple[Alignment, ...]
    seconds: float = 0.0


def _evaluate(model, states, data, split) -> tuple[np.ndarray, np.ndarray]:
    layout = ParamLayout.from_module(model)
    losses, errors = [], []
    for s in states:
        params, buffers = split_state(model, s)
        loss, acc = evaluate_points(model, layout.flatten(params)[None], data, buffers=buffers, split=split)
        losses.append(float(loss[0]))
        errors.append(1.0 - float(acc[0]))
    return np.asarray(losses), np.asarray(errors)


def merge_models(
    model: nn.Module,
    states: Sequence[Mapping[str, Tensor]],
    data,
    *,
    method: Literal["average", "fisher"] = "average",
    align: Literal["none", "weight", "activation"] = "weight",
    reference: int = 0,
    weights: Sequence[float] | None = None,
    bn: Literal["average", "reset"] = "reset",
    fishers: Sequence[Mapping[str, Tensor]] | None = None,
    fisher_floor: float = 1e-6,
    normalize_fishers: bool = True,
    fisher_samples: int | None = 512,
    bn_batches: int = 8,
    bn_batch_size: int = 256,
    split: str = "test",
    seed: int = 0,
) -> MergeResult:
    """Align ``states`` to one reference member, merge them, and evaluate the result.

    Parameters
    ----------
    model : nn.Module
        The architecture of every member.
    states : sequence of dict[str, Tensor]
        Member state dicts (at least two).
    data : Dataset-like or pair
        A Dataset: the train split aligns, estimates Fishers and resets BN; ``split``
        evaluates. A pair is used for everything.
    method : {"average", "fisher"}, default "average"
    align : {"none", "weight", "activation"}, default "weight"
        Each member is aligned to ``states[reference]`` and checked to compute the same
        function after permutation.
    reference : int, default 0
    weights : sequence of float, optional
        Merge weights (uniform by default).
    bn : {"average", "reset"}, default "reset"
        "reset" recomputes BatchNorm statistics for the merged weights (no effect
        without BatchNorm).
    fishers : sequence of dict, optional
        Precomputed Fishers *of the aligned members*; computed with
        :func:`diagonal_fisher` when needed and not given.
    fisher_floor, normalize_fishers : see :func:`fisher_merge`
    fisher_samples : int or None
        Samples per Fisher estimate.
    bn_batches, bn_batch_size : int
        Size of the BN reset.
    split : {"train", "test"}, default "test"
        Split the merged model and the members are evaluated on.
    seed : int

    Returns
    -------
    MergeResult
    """
    t0 = time.perf_counter()
    if len(states) < 2:
        raise ValueError(f"merging needs at least two states; got {len(states)}")
    if method not in ("average", "fisher"):
        raise ValueError(f"method must be 'average' or 'fisher'; got {method!r}")
    if bn not in ("average", "reset"):
        raise ValueError(f"bn must be 'average' or 'reset'; got {bn!r}")
    if not 0 <= reference < len(states):
        raise ValueError(f"reference must index states (0..{len(states) - 1}); got {reference}")
    w = _check_weights(weights, len(states))
    spec = permutation_spec(model) if align != "none" else None
    full = [{**dict(model.named_buffers()), **dict(s)} for s in states]
    aligned, alignments = [], []
    for i, s in enumerate(full):
        if i == reference or align == "none":
            aligned.append(s)
            alignments.append(Alignment.identity(spec, s) if spec is not None else Alignment({}, "identity"))
            continue
        al = align_models(model, full[reference], s, data, method=align, spec=spec, seed=seed)
        aligned.append(apply_alignment(model, s, al, data, spec=spec))
        alignments.append(al)
    if method == "fisher":
        fishers = fishers or [diagonal_fisher(model, s, data, n_samples=fisher_samples, seed=seed) for s in aligned]
        merged = fisher_merge(aligned, fishers, weights=w, floor=fisher_floor, normalize=normalize_fishers)
    else:
        merged = average_states(aligned, w)
    if bn == "reset" and has_batchnorm(model):
        x_train = resolve_data(data, "train")[0]
        batches = bn_reset_batches(x_train, n_batches=bn_batches, batch_size=bn_batch_size, seed=seed)
        params, buffers = split_state(model, merged)
        merged = {**params, **reset_bn_stats(model, params, batches, buffers=buffers)}
    merged = {k: v.detach().cpu().clone() for k, v in merged.items()}
    losses, errors = _evaluate(model, [merged, *full], data, split)
    return MergeResult(state=merged, method=method, align=align, bn=bn, loss=float(losses[0]), error=float(errors[0]),
                       member_loss=losses[1:], member_error=errors[1:], weights=w,
                       split=split if hasattr(data, "x_train") else "given", alignments=tuple(alignments),
                       seconds=time.perf_counter() - t0)
