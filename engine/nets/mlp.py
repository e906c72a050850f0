"""Multi-layer perceptron: flattens any input (one-hot encodes token inputs first)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from engine.config import ArchSpec
from engine.nets.layers import ACTIVATIONS, activation, batchnorm, layer_stack_axes
from engine.nets.options import Option, resolve_options
from engine.nets.permutation import PermutationSpec

__all__ = ["MLP", "MLP_OPTIONS", "build_mlp", "mlp_permutation_spec"]

MLP_OPTIONS = {
    "activation": Option("relu", choices=ACTIVATIONS),
    "batchnorm": Option(False),  # Linear -> BatchNorm1d -> activation in every hidden layer
}


class Dense(nn.Module):
    """Linear -> (BatchNorm) -> activation."""

    def __init__(self, d_in: int, d_out: int, act: str, use_bn: bool):
        super().__init__()
        self.linear = nn.Linear(d_in, d_out, bias=not use_bn)
        self.norm = batchnorm(0, d_out) if use_bn else nn.Identity()
        self.act = activation(act)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.linear(x)))


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` units and a linear head.

    State keys: ``layers.{i}.linear.{weight,bias}``, ``layers.{i}.norm.*`` (with
    batchnorm), ``head.{weight,bias}``.
    """

    def __init__(self, in_features: int, width: int, depth: int, n_outputs: int, *,
                 act: str = "relu", use_bn: bool = False, vocab_size: int | None = None):
        super().__init__()
        self.vocab_size = vocab_size
        sizes = [in_features] + [width] * depth
        self.layers = nn.ModuleList(Dense(a, b, act, use_bn) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        if self.vocab_size is not None:  # (B, *shape) int tokens -> (B, *shape, V) one-hot
            x = (x.unsqueeze(-1) == torch.arange(self.vocab_size, device=x.device)).to(self.head.weight.dtype)
        x = x.flatten(1)  # (B, D)
        for layer in self.layers:
            x = layer(x)  # (B, width)
        return self.head(x)  # (B, n_outputs)


def build_mlp(spec: ArchSpec, input_shape: tuple[int, ...], n_outputs: int, vocab_size: int | None) -> MLP:
    opts = resolve_options("mlp", MLP_OPTIONS, spec.options)
    in_features = math.prod(input_shape) * (vocab_size or 1)
    return MLP(in_features, spec.width, spec.depth, n_outputs,
               act=opts["activation"], use_bn=opts["batchnorm"], vocab_size=vocab_size)


def mlp_permutation_spec(model: MLP) -> PermutationSpec:
    """One perm per hidden layer, named ``layers.{i}``; inputs and outputs stay fixed."""
    return PermutationSpec.from_axes(layer_stack_axes(model.layers, "linear", model.head))
