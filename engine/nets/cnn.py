"""Plain convolutional networks over sequences (``cnn1d``) and images (``cnn2d``)."""

from __future__ import annotations

from torch import Tensor, nn

from engine.config import ArchSpec
from engine.nets.inputs import require_image, require_sequence
from engine.nets.layers import ACTIVATIONS, activation, batchnorm, layer_stack_axes
from engine.nets.options import Option, resolve_options
from engine.nets.permutation import PermutationSpec

__all__ = ["CNN_OPTIONS", "ConvNet", "build_cnn1d", "build_cnn2d", "cnn_permutation_spec"]

CNN_OPTIONS = {
    "activation": Option("relu", choices=ACTIVATIONS),
    "batchnorm": Option(False),  # conv -> BatchNorm -> activation
    "kernel_size": Option(3, minimum=1),  # odd, 'same' padding, stride 1
    "pool": Option(True),  # 2x max-pool after a layer while every spatial size is >= 4
}


class ConvBlock(nn.Module):
    """conv (odd kernel, 'same' padding) -> (BatchNorm) -> activation -> (2x max-pool)."""

    def __init__(self, spatial_dims: int, c_in: int, c_out: int, kernel_size: int, act: str,
                 use_bn: bool, pool: bool):
        super().__init__()
        conv = nn.Conv1d if spatial_dims == 1 else nn.Conv2d
        self.conv = conv(c_in, c_out, kernel_size, padding=kernel_size // 2, bias=not use_bn)
        self.norm = batchnorm(spatial_dims, c_out) if use_bn else nn.Identity()
        self.act = activation(act)
        max_pool = nn.MaxPool1d if spatial_dims == 1 else nn.MaxPool2d
        self.pool = max_pool(2) if pool else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.pool(self.act(self.norm(self.conv(x))))


class ConvNet(nn.Module):
    """``depth`` conv blocks of ``width`` channels, global average pooling, linear head.

    State keys: ``layers.{i}.conv.{weight,bias}``, ``layers.{i}.norm.*`` (with
    batchnorm), ``head.{weight,bias}``.
    """

    def __init__(self, input_shape: tuple[int, ...], width: int, depth: int, n_outputs: int, *,
                 act: str = "relu", use_bn: bool = False, kernel_size: int = 3, pool: bool = True):
        super().__init__()
        channels, *spatial = input_shape
        self.spatial_dims = len(spatial)
        layers = []
        for i in range(depth):
            do_pool = pool and min(spatial) >= 4
            layers.append(ConvBlock(self.spatial_dims, channels if i == 0 else width, width,
                                    kernel_size, act, use_bn, do_pool))
            spatial = [s // 2 for s in spatial] if do_pool else spatial
        self.layers = nn.ModuleList(layers)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        for layer in self.layers:
            x = layer(x)  # (B, width, *spatial)
        x = x.mean(dim=tuple(range(2, 2 + self.spatial_dims)))  # (B, width)
        return self.head(x)  # (B, n_outputs)


def _build(arch: str, spec: ArchSpec, input_shape: tuple[int, ...], n_outputs: int) -> ConvNet:
    opts = resolve_options(arch, CNN_OPTIONS, spec.options)
    if opts["kernel_size"] % 2 == 0:
        raise ValueError(f"option 'kernel_size' of architecture {arch!r} must be odd ('same' padding); "
                         f"got {opts['kernel_size']}")
    return ConvNet(input_shape, spec.width, spec.depth, n_outputs, act=opts["activation"],
                   use_bn=opts["batchnorm"], kernel_size=opts["kernel_size"], pool=opts["pool"])


def build_cnn1d(spec: ArchSpec, input_shape: tuple[int, ...], n_outputs: int, vocab_size: int | None) -> ConvNet:
    require_sequence("cnn1d", input_shape, vocab_size)
    return _build("cnn1d", spec, input_shape, n_outputs)


def build_cnn2d(spec: ArchSpec, input_shape: tuple[int, ...], n_outputs: int, vocab_size: int | None) -> ConvNet:
    require_image("cnn2d", input_shape, vocab_size)
    return _build("cnn2d", spec, input_shape, n_outputs)


def cnn_permutation_spec(model: ConvNet) -> PermutationSpec:
    """One perm per conv layer's output channels, named ``layers.{i}``."""
    return PermutationSpec.from_axes(layer_stack_axes(model.layers, "conv", model.head))
