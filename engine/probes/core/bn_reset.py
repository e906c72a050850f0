"""BatchNorm statistics recomputed for a new parameter vector (REPAIR's "reset").

An interpolated or merged network has weights that no BatchNorm running statistics
were ever computed for: averaging the endpoints' running means and variances is not
the statistics of the averaged network, and evaluating with them inflates the
barrier (the "variance collapse" Jordan et al. describe). The fix is to recompute the
statistics with the new weights on training data: every BatchNorm layer's running
mean and variance are reset and re-estimated as a *cumulative* average over several
batches (``momentum=None`` in PyTorch), as ``reset_bn_stats`` in REPAIR does -- not as an
exponential average, and not one batch repeated.

The module passed in is never mutated: a private shallow copy runs in train mode
under :func:`torch.func.functional_call`, updating fresh buffer tensors in place.

References
----------
K. Jordan, H. Sedghi, O. Saukh, R. Entezari and B. Neyshabur, "REPAIR: REnormalizing
Permuted Activations for Interpolation Repair", ICLR 2023.
S. Ioffe and C. Szegedy, "Batch Normalization", ICML 2015.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call

from engine.probes.core.functional import shallow_copy

__all__ = ["bn_reset_batches", "has_batchnorm", "reset_bn_stats"]

_BN = nn.modules.batchnorm._BatchNorm


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` contains a BatchNorm layer that tracks running statistics."""
    return any(isinstance(m, _BN) and m.track_running_stats for m in model.modules())


def bn_reset_batches(inputs: Tensor, *, n_batches: int = 8, batch_size: int = 256, seed: int = 0) -> list[Tensor]:
    """The input batches the statistics are re-estimated on, drawn once and reused.

    Parameters
    ----------
    inputs : Tensor, shape (N, ...)
        Training inputs.
    n_batches : int, default 8
        At most this many batches; fewer when ``N < n_batches * batch_size``.
    batch_size : int, default 256
        Samples per batch (all ``N`` in one batch when ``N`` is smaller).
    seed : int
        Seed of the random order; same seed -> same batches.

    Returns
    -------
    list of Tensor
        Disjoint batches of a seeded random permutation of the rows, on the inputs' device.
    """
    if n_batches < 1 or batch_size < 2:
        raise ValueError(f"BN reset needs n_batches >= 1 and batch_size >= 2; got {n_batches} and {batch_size}")
    n = len(inputs)
    if n < 2:
        raise ValueError(f"BN reset needs at least 2 training samples to estimate a variance; got {n}")
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=gen).to(inputs.device)
    size = min(batch_size, n)
    count = max(1, min(n_batches, n // size))
    return [inputs[order[i * size : (i + 1) * size]] for i in range(count)]


def _reset_module(model: nn.Module) -> nn.Module:
    """A shallow copy (tensors shared) with BN in cumulative-average train mode, the rest in eval."""
    module = shallow_copy(model)
    module.eval()
    for m in module.modules():
        if isinstance(m, _BN) and m.track_running_stats:
            m.train()
            m.momentum = None  # cumulative moving average over the batches seen
    return module


def _fresh_buffers(model: nn.Module, buffers: Mapping[str, Tensor], device) -> dict[str, Tensor]:
    """Copies of ``buffers``, with every BN layer's statistics set to their initial values."""
    out = {k: v.detach().to(device).clone() for k, v in buffers.items()}
    for name, m in model.named_modules():
        if isinstance(m, _BN) and m.track_running_stats:
            prefix = f"{name}." if name else ""
            out[f"{prefix}running_mean"].zero_()
            out[f"{prefix}running_var"].fill_(1.0)
            out[f"{prefix}num_batches_tracked"].zero_()
    return out


@torch.no_grad()
def reset_bn_stats(
    model: nn.Module,
    params: Mapping[str, Tensor],
    batches: list[Tensor],
    *,
    buffers: Mapping[str, Tensor] | None = None,
) -> dict[str, Tensor]:
    """Running statistics of every BatchNorm layer, re-estimated for ``params``.

    Parameters
    ----------
    model : nn.Module
        The architecture; its own parameter and buffer values are not used or changed.
    params : dict[str, Tensor]
        Parameter values (``named_parameters()`` keys) to compute statistics for.
    batches : list of Tensor
        Input batches, e.g. from :func:`bn_reset_batches`; each is one forward pass.
    buffers : dict, optional
        Template for the non-BN buffers; the model's own by default.

    Returns
    -------
    dict[str, Tensor]
        All buffers, with ``running_mean`` / ``running_var`` the cumulative averages of
        the batch means and unbiased batch variances over ``batches`` (PyTorch's
        ``momentum=None`` rule) and ``num_batches_tracked = len(batches)``. A model
        without BatchNorm gets its buffers back unchanged.

    References
    ----------
    Jordan et al., "REPAIR", ICLR 2023 (``reset_bn_stats``).
    """
    if not batches:
        raise ValueError("reset_bn_stats needs at least one input batch")
    template = dict(model.named_buffers()) if buffers is None else dict(buffers)
    device = batches[0].device
    if not has_batchnorm(model):
        return {k: v.to(device) for k, v in template.items()}
    module = _reset_module(model)
    fresh = _fresh_buffers(model, template, device)
    params = {k: v.detach().to(device) for k, v in params.items()}
    for xb in batches:
        functional_call(module, {**params, **fresh}, (xb,))  # BN updates ``fresh`` in place
    return fresh
