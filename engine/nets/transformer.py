"""A tiny pre-LayerNorm Transformer over token sequences, predicting from the last position.

Attention weights keep an explicit head axis (``w_q`` is ``(heads, head_dim, width)``)
so that permuting heads is a permutation of one tensor axis, which a
:class:`~engine.nets.permutation.PermutationSpec` can express.

References
----------
Vaswani et al., "Attention Is All You Need", NeurIPS 2017; Xiong et al., "On Layer
Normalization in the Transformer Architecture", ICML 2020 (pre-LN);
Power et al., "Grokking", 2022 (the modular-arithmetic setting this is sized for).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from engine.config import ArchSpec
from engine.nets.inputs import require_tokens
from engine.nets.layers import norm_axes, weight_axes
from engine.nets.options import Option, resolve_options
from engine.nets.permutation import PermutationSpec

__all__ = ["TRANSFORMER_OPTIONS", "Transformer", "build_transformer", "transformer_permutation_spec"]

TRANSFORMER_OPTIONS = {
    "heads": Option(4, minimum=1),  # attention heads; width must be a multiple of it
    "mlp_ratio": Option(4, minimum=1),  # MLP hidden units = mlp_ratio * width
}


class Attention(nn.Module):
    """Multi-head self-attention (no mask) with per-head weight tensors."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        head_dim = width // heads
        self.scale = 1.0 / math.sqrt(head_dim)
        for name in ("q", "k", "v"):
            self.register_parameter(f"w_{name}", nn.Parameter(torch.empty(heads, head_dim, width)))
            self.register_parameter(f"b_{name}", nn.Parameter(torch.zeros(heads, head_dim)))
        self.w_o = nn.Parameter(torch.empty(width, heads, head_dim))
        self.b_o = nn.Parameter(torch.zeros(width))
        bound = 1.0 / math.sqrt(width)  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
        for w in (self.w_q, self.w_k, self.w_v, self.w_o):
            nn.init.uniform_(w, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:  # x: (B, T, width)
        q = torch.einsum("btd,hed->bhte", x, self.w_q) + self.b_q[:, None, :]  # (B, H, T, head_dim)
        k = torch.einsum("btd,hed->bhte", x, self.w_k) + self.b_k[:, None, :]
        v = torch.einsum("btd,hed->bhte", x, self.w_v) + self.b_v[:, None, :]
        att = torch.softmax(q @ k.transpose(-1, -2) * self.scale, dim=-1)  # (B, H, T, T)
        out = att @ v  # (B, H, T, head_dim)
        return torch.einsum("bhte,dhe->btd", out, self.w_o) + self.b_o  # (B, T, width)


class FeedForward(nn.Module):
    def __init__(self, width: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(width, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, width)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    """Pre-LN: ``x + attn(ln1(x))``, then ``x + mlp(ln2(x))``."""

    def __init__(self, width: int, heads: int, mlp_ratio: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(width)
        self.attn = Attention(width, heads)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = FeedForward(width, mlp_ratio * width)

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class Transformer(nn.Module):
    """Token + learned position embeddings, ``depth`` pre-LN blocks, final LayerNorm,
    linear head on the last position.

    State keys: ``embed.weight``, ``pos_embed``, ``blocks.{i}.ln{1,2}.*``,
    ``blocks.{i}.attn.{w,b}_{q,k,v,o}``, ``blocks.{i}.mlp.fc{1,2}.*``, ``ln_f.*``, ``head.*``.
    """

    def __init__(self, seq_len: int, vocab_size: int, width: int, depth: int, n_outputs: int, *,
                 heads: int = 4, mlp_ratio: int = 4):
        super().__init__()
        self.embed = nn.Embedding(vocab_size, width)
        self.pos_embed = nn.Parameter(torch.empty(seq_len, width))
        nn.init.normal_(self.embed.weight, std=0.02)  # as in GPT-2 / nanoGPT
        nn.init.normal_(self.pos_embed, std=0.02)
        self.blocks = nn.ModuleList(Block(width, heads, mlp_ratio) for _ in range(depth))
        self.ln_f = nn.LayerNorm(width)
        self.head = nn.Linear(width, n_outputs)

    def forward(self, tokens: Tensor) -> Tensor:  # tokens: (B, T) int64
        x = self.embed(tokens) + self.pos_embed[: tokens.shape[1]]  # (B, T, width)
        for block in self.blocks:
            x = block(x)
        return self.head(self.ln_f(x[:, -1]))  # (B, n_outputs)


def build_transformer(spec: ArchSpec, input_shape: tuple[int, ...], n_outputs: int,
                      vocab_size: int | None) -> Transformer:
    require_tokens("transformer", input_shape, vocab_size)
    opts = resolve_options("transformer", TRANSFORMER_OPTIONS, spec.options)
    if spec.width % opts["heads"]:
        raise ValueError(
            f"architecture 'transformer' needs width divisible by heads; got width={spec.width}, "
            f"heads={opts['heads']}: choose a width that is a multiple of heads"
        )
    return Transformer(input_shape[0], vocab_size, spec.width, spec.depth, n_outputs,
                       heads=opts["heads"], mlp_ratio=opts["mlp_ratio"])


def transformer_permutation_spec(model: Transformer) -> PermutationSpec:
    """Perms: ``residual`` (the residual stream, exact because LayerNorm is
    permutation-equivariant over features), and per block ``blocks.{i}.attn.heads``
    (head order), ``blocks.{i}.attn.qk`` (query/key dimensions, shared by all heads),
    ``blocks.{i}.attn.v`` (value/output dimensions, shared by all heads) and
    ``blocks.{i}.mlp.hidden`` (MLP hidden units)."""
    stream = "residual"
    axes = {"embed.weight": (None, stream), "pos_embed": (None, stream)}
    for i, block in enumerate(model.blocks):
        p = f"blocks.{i}"
        heads, qk, v, hidden = f"{p}.attn.heads", f"{p}.attn.qk", f"{p}.attn.v", f"{p}.mlp.hidden"
        axes |= norm_axes(f"{p}.ln1", block.ln1, stream)
        axes |= {
            f"{p}.attn.w_q": (heads, qk, stream), f"{p}.attn.b_q": (heads, qk),
            f"{p}.attn.w_k": (heads, qk, stream), f"{p}.attn.b_k": (heads, qk),
            f"{p}.attn.w_v": (heads, v, stream), f"{p}.attn.b_v": (heads, v),
            f"{p}.attn.w_o": (stream, heads, v), f"{p}.attn.b_o": (stream,),
        }
        axes |= norm_axes(f"{p}.ln2", block.ln2, stream)
        axes |= weight_axes(f"{p}.mlp.fc1", block.mlp.fc1, hidden, stream)
        axes |= weight_axes(f"{p}.mlp.fc2", block.mlp.fc2, stream, hidden)
    axes |= norm_axes("ln_f", model.ln_f, stream)
    axes |= weight_axes("head", model.head, None, stream)
    return PermutationSpec.from_axes(axes)
