"""Evaluating paths through parameter space: interpolated vectors, their buffers, chunked data.

Shared by :mod:`engine.probes.connectivity.interpolation` and :mod:`engine.probes.connectivity.layerwise`. A path is
a stack of flat parameter vectors ``(G, P)``, each with its own BatchNorm buffers when
the model has any (interpolated, or recomputed by :mod:`engine.probes.core.bn_reset`).
Points are evaluated by :func:`engine.probes.core.point_eval.evaluate_points`.

How many data rows go through the model at once is chosen by :func:`evaluate_points`
(cache-sized chunks on a CPU when they measure faster, the whole set on a GPU); losses
are recombined as sample-weighted means of chunk means, so ``loss_fn`` must be a mean
over samples (the default is).

Points on a straight line (:func:`evaluate_line`) reuse the first layer the way planes do
(:class:`engine.probes.core.plane_eval.FirstLayer`): a ``Linear`` or ``Conv`` fed by the
input alone is linear in its parameters, so its output at ``lerp(theta_a, theta_b, alpha)``
is ``lerp(Z_a, Z_b, alpha)`` with the two ends' outputs computed once.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn

from engine.probes.core.bn_reset import bn_reset_batches, has_batchnorm, reset_bn_stats
from engine.probes.core.conv_plane import conv_line_point
from engine.probes.core.evaluator import Evaluator
from engine.probes.core.functional import ParamLayout, resolve_data, split_state
from engine.probes.core.plane_eval import first_layer_split
from engine.probes.core.point_eval import evaluate_points, points_with_buffers

__all__ = [
    "check_bn",
    "evaluate_line",
    "evaluate_states",
    "lerp_buffers",
    "lerp_flat",
    "path_buffers",
    "path_states",
    "reset_inputs",
    "split_name",
]

def path_states(model: nn.Module, theta_a: Mapping[str, Tensor], theta_b: Mapping[str, Tensor]):
    """``(layout, (params_a, buffers_a), (params_b, buffers_b))`` with the layouts checked equal."""
    params_a, buffers_a = split_state(model, theta_a)
    params_b, buffers_b = split_state(model, theta_b)
    for name in params_a:
        if params_a[name].shape != params_b[name].shape:
            raise ValueError(f"parameter {name!r} has shape {tuple(params_a[name].shape)} in theta_a but "
                             f"{tuple(params_b[name].shape)} in theta_b; are they the same architecture?")
    return ParamLayout.from_module(model), (params_a, buffers_a), (params_b, buffers_b)


def lerp_flat(a: Tensor, b: Tensor, alphas: np.ndarray) -> Tensor:
    """``(1 - alpha) * a + alpha * b`` for every alpha: shape ``(G, P)``; exact at 0 and 1."""
    w = torch.as_tensor(alphas, dtype=a.dtype, device=a.device)[:, None]  # (G, 1)
    return (1.0 - w) * a[None] + w * b[None]


def lerp_buffers(a: Mapping[str, Tensor], b: Mapping[str, Tensor], alpha: float) -> dict[str, Tensor]:
    """Float buffers interpolated like weights; integer ones (``num_batches_tracked``) from ``a``."""
    return {k: (1.0 - alpha) * v + alpha * b[k].to(v.device) if v.is_floating_point() else v for k, v in a.items()}


def evaluate_states(model, thetas: Tensor, buffers: list[dict[str, Tensor]] | None, data, *, layout,
                    loss_fn, strategy, rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Loss and accuracy of flat vectors ``thetas`` (G, P), each with its own buffers when given.

    One :func:`evaluate_points` call with data chunks of ``rows`` rows (all rows by
    default), whose results are sample-weighted means over the chunks.
    """
    loss, acc = evaluate_points(model, thetas, data, buffers=buffers, layout=layout, loss_fn=loss_fn,
                                strategy=strategy, rows=rows)
    return loss.numpy(), acc.numpy()


def evaluate_line(model, flat_a: Tensor, flat_b: Tensor, alphas: np.ndarray, thetas: Tensor,
                  buffers: list[dict[str, Tensor]] | None, data, *, layout, loss_fn, strategy,
                  rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`evaluate_states` for the points ``thetas = lerp_flat(flat_a, flat_b, alphas)`` of a line.

    The built-in 1-D ConvNet runs as plain operations in row blocks, its BatchNorm (each point's
    statistics) folded into the convolutions (:func:`~engine.probes.core.conv_plane.conv_line_point`,
    used after it reproduced the model at the first, last and middle points). Otherwise,
    with the first layer split off (:func:`~engine.probes.core.plane_eval.first_layer_split`:
    it applies, its two end outputs fit the memory bound, combining pays, and the split
    reproduces the model at alpha 0, 1 and 0.7), each point's first-layer output is
    ``torch.lerp(Z_a, Z_b, alpha)`` a data chunk at a time, exact at both ends. Otherwise, and
    with ``strategy="vmap"``, the points go through :func:`evaluate_states`. The values agree
    either way up to float rounding; each point still has its own buffers when given.
    """
    if strategy == "vmap":
        return evaluate_states(model, thetas, buffers, data, layout=layout, loss_fn=loss_fn, strategy=strategy,
                               rows=rows)
    ev = Evaluator(model, data, layout=layout, buffers=buffers[0] if buffers else None, loss_fn=loss_fn)
    flat_a, flat_b, thetas = flat_a.to(ev.device), flat_b.to(ev.device), thetas.to(ev.device)
    checks = [(thetas[g], float(alphas[g]), buffers[g] if buffers else ev.buffers) for g in (0, len(thetas) - 1,
                                                                                              len(thetas) // 2)]
    chain_point = conv_line_point(ev, flat_a, flat_b, checks, rows)  # the built-in 1-D ConvNet (conv_plane.py)
    if chain_point is not None:
        loss, acc = points_with_buffers(ev, chain_point, [(t, float(a)) for t, a in zip(thetas, alphas)], buffers,
                                        key=(ev.kind(), "line", "conv chain"))
        return loss.numpy(), acc.numpy()
    ev.choose_rows(thetas[0], rows)
    ends = [(0.0, 0.0), (1.0, 0.0), (0.7, 0.0)]
    first = first_layer_split(ev, flat_a, flat_b - flat_a, torch.zeros_like(flat_a), ends, kept=2)
    if first is None:
        return evaluate_states(model, thetas, buffers, data, layout=layout, loss_fn=loss_fn, strategy=strategy,
                               rows=rows)
    with torch.no_grad():
        z_a, z_b = first.output(layout.unflatten(flat_a)), first.output(layout.unflatten(flat_b))  # (N, ...) each

    def point(mine: Evaluator, theta: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
        state = {**layout.unflatten(theta), **mine.buffers}
        return mine.chunked(lambda lo, hi: first.run_rest(torch.lerp(z_a[lo:hi], z_b[lo:hi], alpha), state,
                                                          mine.x[lo:hi]))

    loss, acc = points_with_buffers(ev, point, [(t, float(a)) for t, a in zip(thetas, alphas)], buffers,
                                    key=(ev.kind(), "line", first.path))
    return loss.numpy(), acc.numpy()


def path_buffers(model, thetas: Tensor, layout: ParamLayout, bn: str, buffers_a, buffers_b, alphas,
                 reset_batches: list[Tensor] | None) -> list[dict[str, Tensor]] | None:
    """Per-point buffers of a path: None when there are none, interpolated, or reset."""
    if not buffers_a:
        return None
    if bn == "reset" and has_batchnorm(model):
        return [reset_bn_stats(model, layout.unflatten(t), reset_batches, buffers=buffers_a) for t in thetas]
    return [lerp_buffers(buffers_a, buffers_b, float(a)) for a in alphas]


def reset_inputs(data, bn_data, split: str, *, n_batches: int, batch_size: int, seed: int) -> list[Tensor]:
    """Training input batches for BN reset: ``bn_data``, else the train split of a Dataset, else ``data``."""
    source = bn_data if bn_data is not None else data
    x, _ = resolve_data(source, "train")
    return bn_reset_batches(x, n_batches=n_batches, batch_size=batch_size, seed=seed)


def split_name(data, split: str) -> str:
    return split if hasattr(data, "x_train") else "given"


def check_bn(bn: str) -> None:
    if bn not in ("running", "reset"):
        raise ValueError(f"bn must be 'running' (interpolated statistics) or 'reset' (recomputed at each alpha); "
                         f"got {bn!r}")
