"""K runs' forward pass from parameters stacked along a leading axis ``(K, ...)``.

``vmap(functional_call(model, ...))`` runs any architecture on stacked parameters; the
population trainer uses it for everything but the built-in plain MLP, whose forward is
written here directly as batched products: one ``baddbmm`` per layer (vmap splits each
``nn.Linear`` into a ``bmm`` and a separate bias ``add`` pass over the activations) and the
ReLU in place on the product's fresh output. The arithmetic is the module's own, so the
outputs equal vmap's to float rounding (the order of the bias add differs); tests compare them.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

from engine.nets.mlp import MLP

__all__ = ["StackedForward", "stacked_forward"]

StackedForward = Callable[[dict[str, Tensor], dict[str, Tensor], Tensor], Tensor]


def stacked_forward(model: nn.Module) -> StackedForward:
    """``fn(params, buffers, x) -> outputs`` for ``model``'s architecture, K runs at once.

    Parameters
    ----------
    model : nn.Module
        The architecture (its parameters are not read; a ``meta`` copy will do).

    Returns
    -------
    callable
        ``params`` and ``buffers`` hold ``(K, ...)`` stacked tensors (as from
        ``torch.func.stack_module_state``), ``x`` the runs' inputs ``(K, B, ...)``; the
        result is ``(K, B, ...)``. The built-in MLP without BatchNorm or token inputs runs as
        batched products, everything else under ``vmap``.
    """
    if type(model) is MLP and model.vocab_size is None and all(
        isinstance(layer.norm, nn.Identity) and layer.linear.bias is not None for layer in model.layers
    ):
        return partial(_mlp_forward, [layer.act for layer in model.layers])
    return partial(_vmap_forward, model)


def _vmap_forward(model: nn.Module, params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
    return vmap(lambda p, b, xk: functional_call(model, (p, b), (xk,)))(params, buffers, x)


def _mlp_forward(acts: list[nn.Module], params: dict[str, Tensor], buffers: dict[str, Tensor], x: Tensor) -> Tensor:
    # Features first, samples last: each product is W @ h, so autograd's weight gradient
    # g @ h^T comes out in the weight's own (K, out, in) layout, with no transposed copy.
    h = x.flatten(2).transpose(1, 2)  # (K, D, B)
    for i, act in enumerate(acts):
        h = _linear(h, params[f"layers.{i}.linear.weight"], params[f"layers.{i}.linear.bias"])  # (K, width, B)
        # ReLU may overwrite the product: baddbmm's backward does not read its output.
        h = torch.relu_(h) if isinstance(act, nn.ReLU) else act(h)
    return _linear(h, params["head.weight"], params["head.bias"]).transpose(1, 2)  # (K, B, C), a view


def _linear(h: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    # (K, out, 1) + (K, out, in) @ (K, in, B): the bias added inside the product
    return torch.baddbmm(bias.unsqueeze(-1), weight, h)
