"""Layer-wise linear mode connectivity: which layers hold the barrier.

Interpolate one layer (or the first ``g`` layers, cumulatively) between ``theta_a`` and
``theta_b`` while every other layer stays at an endpoint, and measure the barrier of
that path. Adilova et al. find that most single layers are linearly connected even
when the whole networks are not, and that the barrier builds up over groups of
layers.

Paths, for a group ``S`` of parameters (``lerp`` exact at both ends):

- rest at A: ``theta_S(alpha) = lerp(a_S, b_S, alpha)``, every other tensor ``a``;
- rest at B: ``theta_S(alpha) = lerp(a_S, b_S, alpha)``, every other tensor ``b``.

The barrier of each path is taken against that path's own endpoints, by the
definition named in ``kind`` (see :mod:`engine.probes.connectivity.interpolation`). BatchNorm
buffers belong to the group of their layer; with ``bn="reset"`` they are recomputed at
every point instead.

References
----------
L. Adilova, M. Andriushchenko, M. Kamp, A. Fischer and M. Jaggi, "Layer-wise Linear
Mode Connectivity", ICLR 2024.
J. Frankle, G. K. Dziugaite, D. Roy and M. Carbin, "Linear Mode Connectivity and the
Lottery Ticket Hypothesis", ICML 2020.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn

from engine.probes.connectivity.interpolation import BarrierKind, PathBN, barrier, resolve_alphas
from engine.probes.core import (
    LossFn,
    ParamLayout,
    Strategy,
    check_bn,
    evaluate_states,
    has_batchnorm,
    path_states,
    reset_bn_stats,
    reset_inputs,
    resolve_data,
    split_name,
)

__all__ = ["LayerwiseBarriers", "layer_groups", "layerwise_barriers"]

_BN = nn.modules.batchnorm._BatchNorm


@dataclass(frozen=True)
class LayerwiseBarriers:
    """Barrier of each layer's (or each cumulative group's) path.

    Attributes
    ----------
    groups : tuple of str
        Group names in forward order.
    members : tuple of tuple of str
        Parameter names interpolated on each group's path (cumulative when asked).
    from_a, from_b : np.ndarray, shape (L,)
        Barrier with the other layers at ``theta_a`` / at ``theta_b``.
    curves_a, curves_b : np.ndarray, shape (L, G)
        The metric along each path.
    alphas : np.ndarray, shape (G,)
    kind, metric : str
        Barrier definition and metric (see :data:`engine.probes.connectivity.interpolation.BARRIER_DEFINITIONS`).
    cumulative : bool
    split, bn : str
    seconds : float
    """

    groups: tuple[str, ...]
    members: tuple[tuple[str, ...], ...]
    from_a: np.ndarray
    from_b: np.ndarray
    curves_a: np.ndarray
    curves_b: np.ndarray
    alphas: np.ndarray
    kind: str
    metric: str
    cumulative: bool
    split: str
    bn: str
    seconds: float = 0.0


def layer_groups(model: nn.Module) -> dict[str, tuple[str, ...]]:
    """Default groups: the parameters of each module, in forward (registration) order.

    A BatchNorm layer joins the group before it (conv/linear -> BN is one layer);
    a parameter owned by the root module (e.g. ``pos_embed``) is its own group.
    """
    modules = dict(model.named_modules())
    groups: dict[str, list[str]] = {}
    for name, _ in model.named_parameters():
        owner = name.rpartition(".")[0]
        key = owner or name
        if owner and isinstance(modules[owner], _BN) and groups and key not in groups:
            key = next(reversed(groups))
        groups.setdefault(key, []).append(name)
    return {k: tuple(v) for k, v in groups.items()}


def _buffer_owner(params_of_group: Sequence[str], buffers: Mapping[str, Tensor]) -> list[str]:
    owners = {p.rpartition(".")[0] for p in params_of_group}
    return [k for k in buffers if k.rpartition(".")[0] in owners]


def _check_groups(groups: Mapping[str, Sequence[str]], layout: ParamLayout) -> dict[str, tuple[str, ...]]:
    out = {}
    for g, names in groups.items():
        unknown = [n for n in names if n not in layout.names]
        if unknown or not names:
            raise ValueError(f"group {g!r} lists {unknown or 'no parameters'}; groups must list parameter "
                             f"names of the model, e.g. {list(layout.names[:3])}")
        out[g] = tuple(names)
    return out


def _mask(layout: ParamLayout, names: Sequence[str], device) -> Tensor:
    mask = torch.zeros(layout.numel, dtype=torch.bool, device=device)
    for n in names:
        mask[layout.slice(n)] = True
    return mask


def _group_path(base: Tensor, flat_a: Tensor, flat_b: Tensor, mask: Tensor, grid: np.ndarray) -> Tensor:
    w = torch.as_tensor(grid, dtype=flat_a.dtype, device=flat_a.device)[:, None]  # (G, 1)
    moving = (1.0 - w) * flat_a[None] + w * flat_b[None]  # (G, P), exact at both ends
    return torch.where(mask[None], moving, base[None])


def _group_buffers(base, buf_a, buf_b, keys, grid, reset, model, layout, thetas):
    if not base:
        return None
    if reset is not None:
        return [reset_bn_stats(model, layout.unflatten(t), reset, buffers=base) for t in thetas]
    out = []
    for alpha in grid:
        buf = dict(base)
        for k in keys:
            if buf_a[k].is_floating_point():
                buf[k] = (1.0 - alpha) * buf_a[k] + alpha * buf_b[k].to(buf_a[k].device)
        out.append(buf)
    return out


def layerwise_barriers(
    model: nn.Module,
    theta_a: Mapping[str, Tensor],
    theta_b: Mapping[str, Tensor],
    data,
    *,
    groups: Mapping[str, Sequence[str]] | None = None,
    cumulative: bool = False,
    alphas: int | Sequence[float] | np.ndarray = 25,
    kind: BarrierKind = "max_minus_linear",
    metric: str = "loss",
    split: str = "train",
    bn: PathBN = "running",
    bn_data=None,
    bn_batches: int = 8,
    bn_batch_size: int = 256,
    seed: int = 0,
    loss_fn: LossFn | None = None,
    strategy: Strategy = "auto",
) -> LayerwiseBarriers:
    """Barrier of the path that interpolates one layer (group) while the rest stays put.

    Parameters
    ----------
    model, theta_a, theta_b, data, alphas, split, bn, bn_data, bn_batches, bn_batch_size, seed, loss_fn, strategy
        As in :func:`engine.probes.connectivity.interpolation.interpolate`.
    groups : dict[str, list of str], optional
        Group name -> parameter names, in forward order; :func:`layer_groups` by default.
    cumulative : bool, default False
        Group ``g`` interpolates groups ``0..g`` together (the last is the whole model).
    kind : {"max_minus_linear", "max_minus_mean", "midpoint"}
    metric : {"loss", "error"}

    Returns
    -------
    LayerwiseBarriers

    References
    ----------
    Adilova et al., "Layer-wise Linear Mode Connectivity", ICLR 2024.
    """
    t0 = time.perf_counter()
    check_bn(bn)
    if metric not in ("loss", "error"):
        raise ValueError(f"metric must be 'loss' or 'error'; got {metric!r}")
    grid = resolve_alphas(alphas)
    x, y = resolve_data(data, split)
    layout, (pa, ba), (pb, bb) = path_states(model, theta_a, theta_b)
    groups = _check_groups(groups if groups is not None else layer_groups(model), layout)
    flat_a, flat_b = layout.flatten(pa).to(x.device), layout.flatten(pb).to(x.device)
    reset = None
    if bn == "reset" and has_batchnorm(model):
        reset = reset_inputs(data, bn_data, split, n_batches=bn_batches, batch_size=bn_batch_size, seed=seed)
    names, members, curves = list(groups), [], {"a": [], "b": []}
    rows = None if strategy != "vmap" else len(x)  # None: evaluate_points chooses
    for i, g in enumerate(names):
        member = tuple(n for h in names[: i + 1] for n in groups[h]) if cumulative else groups[g]
        members.append(member)
        mask = _mask(layout, member, x.device)
        keys = _buffer_owner(member, ba)
        for side, base, base_buf in (("a", flat_a, ba), ("b", flat_b, bb)):
            thetas = _group_path(base, flat_a, flat_b, mask, grid)
            buffers = _group_buffers(base_buf, ba, bb, keys, grid, reset, model, layout, thetas)
            loss, acc = evaluate_states(model, thetas, buffers, (x, y), layout=layout, loss_fn=loss_fn,
                                        strategy=strategy, rows=rows)
            curves[side].append(loss if metric == "loss" else 1.0 - acc)
    heights = {s: np.array([barrier(c, alphas=grid, kind=kind, metric=metric).value for c in curves[s]])
               for s in curves}
    return LayerwiseBarriers(groups=tuple(names), members=tuple(members), from_a=heights["a"], from_b=heights["b"],
                             curves_a=np.array(curves["a"]), curves_b=np.array(curves["b"]), alphas=grid, kind=kind,
                             metric=metric, cumulative=cumulative, split=split_name(data, split), bn=bn,
                             seconds=time.perf_counter() - t0)
