"""Layout operations for :func:`engine.nets.infer_perm_spec`: views, slices, concatenations.

These move labels between axes without computing anything: a transpose swaps two axes'
labels, a reshape regroups them (a flatten scales the leading axis' perm into blocks, a
split into heads coarsens it to whole heads), a slice or a concatenation cuts or joins
them (each part of a concatenated axis keeps its own perm). Also here: :class:`Ctx`, what
every rule sees, and the elementwise broadcast they share.
"""

from __future__ import annotations

from torch import Tensor
from torch.fx import Node

from engine.nets.infer_labels import Classes, Label

__all__ = [
    "Ctx", "Labels", "axis_of", "broadcast", "cat", "chunk", "cut_along", "expand", "meta_shape", "permute", "reshape",
    "select", "slice_axis", "split", "squeeze", "stack", "transpose", "unsqueeze",
]

Labels = tuple[Label, ...]  # one label per axis of a tensor


def meta_shape(node):
    """A traced node's output shape (a list of them for several outputs; None for non-tensors)."""
    val = node.meta.get("val") if isinstance(node, Node) else None
    if isinstance(val, Tensor):
        return tuple(int(n) for n in val.shape)
    if isinstance(val, list | tuple):
        return [tuple(int(n) for n in v.shape) if isinstance(v, Tensor) else None for v in val]
    return None


class Ctx:
    """What a rule sees: the classes, the node's output shape(s) and a description of where it is."""

    def __init__(self, k: Classes, shapes, where: str):
        self.k, self.shapes, self.where = k, shapes, where

    def reason(self, what: str) -> str:
        return f"{what} ({self.where})"

    def fixed(self, shape) -> Labels:
        return tuple(self.k.fixed_label(n) for n in shape)

    def any(self, shape) -> Labels:
        return tuple(self.k.any_label(n) for n in shape)

    def unify(self, a: Label, b: Label, what: str) -> Label:
        return self.k.unify(a, b, self.reason(what))

    def fix(self, labels: Labels, what: str, listed: bool = True) -> None:
        for label in labels:
            self.k.fix_label(label, self.reason(what), listed)


def axis_of(d: int, ndim: int) -> int:
    return d + ndim if d < 0 else d


# ---------------------------------------------------------------- elementwise and layout


def broadcast(ctx: Ctx, inputs: list[tuple[Labels, tuple]], out_shape, what: str) -> Labels:
    """Elementwise: axes aligned from the right share their perm; size-1 axes broadcast freely."""
    out = []
    for i in range(1, len(out_shape) + 1):
        label = None
        for labels, shape in inputs:
            if len(shape) >= i and shape[-i] == out_shape[-i]:
                label = labels[-i] if label is None else ctx.unify(label, labels[-i], what)
        out.append(label if label is not None else ctx.k.any_label(out_shape[-i]))
    return tuple(reversed(out))


def reshape(ctx: Ctx, labels: Labels, shape_in, shape_out) -> Labels:
    """A view: groups of input axes become groups of output axes with the same product. A
    group's leading axis keeps the perm (inner axes become block positions); splitting an
    axis coarsens its perm to whole blocks of the inner axes' size."""
    k = ctx.k
    src = [(label, n) for label, n in zip(labels, shape_in) if n != 1]
    dst = [i for i, n in enumerate(shape_out) if n != 1]
    out: list[Label] = [k.any_label(1) for _ in shape_out]
    i = j = 0
    while i < len(src) or j < len(dst):
        gi, gj, pi, pj = [i], [j], src[i][1], shape_out[dst[j]]
        i, j = i + 1, j + 1
        while pi != pj:
            if pi < pj:
                gi.append(i); pi *= src[i][1]; i += 1  # noqa: E702
            else:
                gj.append(j); pj *= shape_out[dst[j]]; j += 1  # noqa: E702
        inner = 1
        for a in gi[1:]:
            inner *= src[a][1]
        if len(gi) > 1:
            ctx.fix(tuple(src[a][0] for a in gi[1:]), "a reshape folds this axis into the blocks of another")
        flat = k.scale(src[gi[0]][0], inner) if len(gi) > 1 else src[gi[0]][0]
        rest = 1
        for b in gj[1:]:
            rest *= shape_out[dst[b]]
        out[dst[gj[0]]] = k.divide(flat, rest, ctx.reason("a reshape splits this axis")) if rest > 1 else flat
        plain = "a" if k.is_plain(flat, "a") else "f"
        for b in gj[1:]:
            n = shape_out[dst[b]]
            out[dst[b]] = k.any_label(n) if plain == "a" else k.fixed_label(n)
    return tuple(out)


def cut_along(ctx, x, dim, bounds):
    dim = axis_of(dim, len(x))
    pieces = []
    for lo, hi in bounds:
        label = ctx.k.cut(x[dim], lo, hi, ctx.reason("a slice"))
        pieces.append(x[:dim] + (label,) + x[dim + 1:])
    return pieces


def slice_axis(ctx, x, shape, dim=0, start=None, end=None, step=1):
    dim = axis_of(dim, len(x))
    n = shape[dim]
    lo, hi = slice(start, end).indices(n)[:2]
    if step != 1:
        ctx.fix((x[dim],), f"a strided slice (step {step})")
        return x[:dim] + (ctx.k.fixed_label(ctx.shapes[dim]),) + x[dim + 1:]
    if lo == 0 and hi >= n:
        return x
    return cut_along(ctx, x, dim, [(lo, hi)])[0]


def split(ctx, x, shape, sizes, dim=0):
    dim = axis_of(dim, len(x))
    n = shape[dim]
    if isinstance(sizes, int):
        sizes = [min(sizes, n - lo) for lo in range(0, n, sizes)]
    bounds, lo = [], 0
    for s in sizes:
        bounds.append((lo, lo + s))
        lo += s
    return cut_along(ctx, x, dim, bounds)


def chunk(ctx, x, shape, chunks, dim=0):
    n = shape[axis_of(dim, len(x))]
    size = -(-n // chunks)
    return split(ctx, x, shape, size, dim)


def select(ctx, x, dim, index):
    dim = axis_of(dim, len(x))
    ctx.fix((x[dim],), f"aten.select reads entry {index} of this axis by position")
    return x[:dim] + x[dim + 1:]


def permute(x, dims):
    return tuple(x[axis_of(d, len(x))] for d in dims)


def transpose(x, a, b):
    a, b = axis_of(a, len(x)), axis_of(b, len(x))
    out = list(x)
    out[a], out[b] = out[b], out[a]
    return tuple(out)


def unsqueeze(ctx, x, dim):
    d = axis_of(dim, len(x) + 1)
    return x[:d] + (ctx.k.any_label(1),) + x[d:]


def squeeze(ctx, x, shape, dims=None):
    dims = range(len(x)) if dims is None else [dims] if isinstance(dims, int) else dims
    drop = {axis_of(d, len(x)) for d in dims if shape[axis_of(d, len(x))] == 1}
    return tuple(label for i, label in enumerate(x) if i not in drop)


def expand(ctx, x, shape, sizes):
    out = list(ctx.any(ctx.shapes))
    for i in range(1, len(x) + 1):
        if shape[-i] == ctx.shapes[-i]:
            out[-i] = x[-i]
    return tuple(out)


def cat(ctx, tensors, shapes, dim=0):
    live = [(t, s) for t, s in zip(tensors, shapes) if any(s)]
    dim = axis_of(dim, len(live[0][0]))
    first = live[0][0]
    for t, _ in live[1:]:
        for i in range(len(first)):
            if i != dim:
                ctx.unify(first[i], t[i], "a concatenation's other axes")
    joined = tuple(seg for t, _ in live for seg in ctx.k.normalize(t[dim]))
    return first[:dim] + (joined,) + first[dim + 1:]


def stack(ctx, tensors, shapes, dim=0):
    first = tensors[0]
    for t in tensors[1:]:
        for i in range(len(first)):
            ctx.unify(first[i], t[i], "a stack's axes")
    d = axis_of(dim, len(first) + 1)
    return first[:d] + (ctx.k.fixed_label(len(tensors)),) + first[d:]


