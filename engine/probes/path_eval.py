"""Evaluating paths through parameter space: interpolated vectors, their buffers, chunked data.

Shared by :mod:`engine.probes.connectivity` and :mod:`engine.probes.layerwise`. A path is
a stack of flat parameter vectors ``(G, P)``, each with its own BatchNorm buffers when
the model has any (interpolated, or recomputed by :mod:`engine.probes.bn_reset`).
Points are evaluated by :func:`engine.probes.functional.evaluate_points`.

On a CPU the data are split into chunks sized so that one chunk's activations stay
near the caches (about 4 M floats, at least 256 rows): measured on MNIST-1D, a
3-layer CNN ran 2-3x faster per point on 256-row chunks than on 4000 rows at once,
while an MLP's large matrix products lose nothing at >= 512 rows. On a GPU the whole
set is one batch. Losses are recombined as sample-weighted means of chunk means,
so ``loss_fn`` must be a mean over samples (the default is).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from engine.probes.bn_reset import bn_reset_batches, has_batchnorm, reset_bn_stats
from engine.probes.functional import ParamLayout, evaluate_points, functional_module, resolve_data, split_state

__all__ = [
    "check_bn",
    "chunk_rows",
    "evaluate_states",
    "lerp_buffers",
    "lerp_flat",
    "path_buffers",
    "path_states",
    "reset_inputs",
    "split_name",
]

_CHUNK_FLOATS = 2**22  # activations of one data chunk on a CPU (16 MiB of float32)
_MIN_ROWS = 256


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


def chunk_rows(model: nn.Module, x: Tensor, buffers: Mapping[str, Tensor] | None = None) -> int:
    """Data rows per evaluation: all of them on a GPU; on a CPU, enough for about
    ``_CHUNK_FLOATS`` activation values (at least 256 rows)."""
    if x.device.type != "cpu" or len(x) <= _MIN_ROWS:
        return len(x)
    total = [0]

    def hook(_m, _i, out):
        if isinstance(out, Tensor):
            total[0] += out.numel()

    module = functional_module(model, "running")  # eval mode: nothing is updated
    leaves = [m for m in module.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(hook) for m in leaves]
    state = {**dict(model.named_buffers()), **dict(buffers or {}), **dict(model.named_parameters())}
    try:
        with torch.no_grad():
            functional_call(module, {k: v.to(x.device) for k, v in state.items()}, (x[:2],))
    finally:
        for h in handles:
            h.remove()
    per_row = max(1, total[0] // 2)
    return int(min(len(x), max(_MIN_ROWS, _CHUNK_FLOATS // per_row)))


def evaluate_states(model, thetas: Tensor, buffers: list[dict[str, Tensor]] | None, data, *, layout,
                    loss_fn, strategy, rows: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Loss and accuracy of flat vectors ``thetas`` (G, P), each with its own buffers when given.

    Points sharing the same buffers go through one :func:`evaluate_points` call per data
    chunk of ``rows`` rows (all rows by default); chunk results are recombined as
    sample-weighted means. With one chunk the numbers are exactly those of
    :func:`evaluate_points` on the whole set.
    """
    x, y = data
    rows = rows or len(x)
    if rows >= len(x):
        return _evaluate_batch(model, thetas, buffers, (x, y), layout, loss_fn, strategy)
    loss, correct = np.zeros(len(thetas)), np.zeros(len(thetas))
    for lo in range(0, len(x), rows):
        xb, yb = x[lo : lo + rows], y[lo : lo + rows]
        part_loss, part_acc = _evaluate_batch(model, thetas, buffers, (xb, yb), layout, loss_fn, strategy)
        loss += part_loss * len(xb)
        correct += np.round(part_acc * len(xb)) if not np.isnan(part_acc).any() else np.nan
    return loss / len(x), correct / len(x)


def _evaluate_batch(model, thetas, buffers, data, layout, loss_fn, strategy) -> tuple[np.ndarray, np.ndarray]:
    kw = dict(layout=layout, loss_fn=loss_fn, strategy=strategy)
    if buffers is None:
        loss, acc = evaluate_points(model, thetas, data, **kw)
        return loss.numpy(), acc.numpy()
    losses, accs = [], []
    for theta, buf in zip(thetas, buffers):
        loss, acc = evaluate_points(model, theta[None], data, buffers=buf, **kw)
        losses.append(loss.numpy())
        accs.append(acc.numpy())
    return np.concatenate(losses), np.concatenate(accs)


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
