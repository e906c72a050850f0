"""Building blocks shared by the built-in architectures, and their permutation axes.

Every block is written without in-place operations so that it runs under
``torch.func.functional_call`` + ``vmap`` over stacked parameters (population training).
"""

from __future__ import annotations

from torch import nn

__all__ = ["ACTIVATIONS", "activation", "batchnorm", "layer_stack_axes", "norm_axes", "weight_axes"]

ACTIVATIONS = ("relu", "tanh", "gelu")


def activation(name: str) -> nn.Module:
    """A fresh elementwise activation module (elementwise, so it commutes with permutations)."""
    return {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}[name]()


def batchnorm(spatial_dims: int, channels: int) -> nn.Module:
    """BatchNorm for inputs with 0 (``(B, C)``), 1 (``(B, C, L)``) or 2 (``(B, C, H, W)``) spatial axes."""
    return (nn.BatchNorm1d if spatial_dims < 2 else nn.BatchNorm2d)(channels)


def weight_axes(prefix: str, layer: nn.Module, out_perm: str | None, in_perm: str | None) -> dict:
    """Axes of a Linear or Conv layer: weight ``(out, in, *kernel)``, bias ``(out,)``."""
    axes = {f"{prefix}.weight": (out_perm, in_perm, *[None] * (layer.weight.ndim - 2))}
    if layer.bias is not None:
        axes[f"{prefix}.bias"] = (out_perm,)
    return axes


def layer_stack_axes(layers: nn.ModuleList, weight: str, head: nn.Module) -> dict:
    """Axes of a stack of blocks ``layers.{i}.{weight}`` (+ ``layers.{i}.norm``) followed by ``head``.

    Perm ``layers.{i}`` permutes block ``i``'s outputs (its weight's rows, its norm) and block
    ``i + 1``'s (or the head's) inputs; the model's inputs and outputs stay fixed.
    """
    axes: dict = {}
    previous = None
    for i, layer in enumerate(layers):
        perm = f"layers.{i}"
        axes |= weight_axes(f"layers.{i}.{weight}", getattr(layer, weight), perm, previous)
        axes |= norm_axes(f"layers.{i}.norm", layer.norm, perm)
        previous = perm
    return axes | weight_axes("head", head, None, previous)


def norm_axes(prefix: str, norm: nn.Module, perm: str | None) -> dict:
    """Axes of a BatchNorm / LayerNorm over features: every 1-D tensor (affine
    parameters and running statistics) follows ``perm``; scalars such as
    ``num_batches_tracked`` have no axis. ``nn.Identity`` contributes nothing."""
    return {f"{prefix}.{name}": (perm,) * tensor.ndim for name, tensor in norm.state_dict().items()}
