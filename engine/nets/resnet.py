"""A small ResNet (constant width, no downsampling) over images or sequences.

References
----------
He, Zhang, Ren & Sun, "Deep Residual Learning for Image Recognition", CVPR 2016.
"""

from __future__ import annotations

from torch import Tensor, nn

from engine.config import ArchSpec
from engine.nets.inputs import require_image_or_sequence
from engine.nets.layers import activation, batchnorm, norm_axes, weight_axes
from engine.nets.options import Option, resolve_options
from engine.nets.permutation import PermutationSpec

__all__ = ["RESNET_OPTIONS", "ResNet", "build_resnet", "resnet_permutation_spec"]

RESNET_OPTIONS = {
    "batchnorm": Option(True),  # BatchNorm after every conv; without it convs get biases
}


def _conv(spatial_dims: int, c_in: int, c_out: int, bias: bool) -> nn.Module:
    return (nn.Conv1d if spatial_dims == 1 else nn.Conv2d)(c_in, c_out, 3, padding=1, bias=bias)


def _norm(spatial_dims: int, channels: int, use_bn: bool) -> nn.Module:
    return batchnorm(spatial_dims, channels) if use_bn else nn.Identity()


class BasicBlock(nn.Module):
    """``relu(x + norm2(conv2(relu(norm1(conv1(x))))))`` with an identity shortcut."""

    def __init__(self, spatial_dims: int, width: int, use_bn: bool):
        super().__init__()
        self.conv1 = _conv(spatial_dims, width, width, bias=not use_bn)
        self.norm1 = _norm(spatial_dims, width, use_bn)
        self.conv2 = _conv(spatial_dims, width, width, bias=not use_bn)
        self.norm2 = _norm(spatial_dims, width, use_bn)
        self.act = activation("relu")

    def forward(self, x: Tensor) -> Tensor:
        h = self.act(self.norm1(self.conv1(x)))
        return self.act(x + self.norm2(self.conv2(h)))


class Stem(nn.Module):
    def __init__(self, spatial_dims: int, c_in: int, width: int, use_bn: bool):
        super().__init__()
        self.conv = _conv(spatial_dims, c_in, width, bias=not use_bn)
        self.norm = _norm(spatial_dims, width, use_bn)
        self.act = activation("relu")

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.norm(self.conv(x)))


class ResNet(nn.Module):
    """Stem conv, ``depth`` basic blocks of ``width`` channels, global average pool, head.

    State keys: ``stem.conv.*``, ``stem.norm.*``, ``blocks.{i}.conv{1,2}.*``,
    ``blocks.{i}.norm{1,2}.*``, ``head.{weight,bias}``.
    """

    def __init__(self, input_shape: tuple[int, ...], width: int, depth: int, n_outputs: int, *,
                 use_bn: bool = True):
        super().__init__()
        channels, *spatial = input_shape
        self.spatial_dims = len(spatial)
        self.stem = Stem(self.spatial_dims, channels, width, use_bn)
        self.blocks = nn.ModuleList(BasicBlock(self.spatial_dims, width, use_bn) for _ in range(depth))
        self.head = nn.Linear(width, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        x = self.stem(x)  # (B, width, *spatial)
        for block in self.blocks:
            x = block(x)
        x = x.mean(dim=tuple(range(2, 2 + self.spatial_dims)))  # (B, width)
        return self.head(x)  # (B, n_outputs)


def build_resnet(spec: ArchSpec, input_shape: tuple[int, ...], n_outputs: int, vocab_size: int | None) -> ResNet:
    require_image_or_sequence("resnet", input_shape, vocab_size)
    opts = resolve_options("resnet", RESNET_OPTIONS, spec.options)
    return ResNet(input_shape, spec.width, spec.depth, n_outputs, use_bn=opts["batchnorm"])


def resnet_permutation_spec(model: ResNet) -> PermutationSpec:
    """The residual stream shares one perm, ``residual``, from the stem to the head
    (identity shortcuts add channels index by index); each block's inner channels
    have their own perm, ``blocks.{i}.inner``."""
    stream = "residual"
    axes = weight_axes("stem.conv", model.stem.conv, stream, None)
    axes |= norm_axes("stem.norm", model.stem.norm, stream)
    for i, block in enumerate(model.blocks):
        inner, prefix = f"blocks.{i}.inner", f"blocks.{i}"
        axes |= weight_axes(f"{prefix}.conv1", block.conv1, inner, stream)
        axes |= norm_axes(f"{prefix}.norm1", block.norm1, inner)
        axes |= weight_axes(f"{prefix}.conv2", block.conv2, stream, inner)
        axes |= norm_axes(f"{prefix}.norm2", block.norm2, stream)
    axes |= weight_axes("head", model.head, None, stream)
    return PermutationSpec.from_axes(axes)
