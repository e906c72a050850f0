"""How each ATen operation of a traced graph constrains the permutation classes of its axes.

A rule gets the labels of its tensor arguments (one :data:`~engine.nets.infer_labels.Label`
per axis) and returns the labels of its output, after constraining the classes in
:class:`~engine.nets.infer_labels.Classes`. The rules encode why an operation commutes with
permutations: an elementwise op with any perm applied alike to its inputs' axes, a linear
layer with a perm of its input features applied to the columns of its weight, a
reduction with any perm of the reduced axis, and so on. An operation without a rule
fixes every class it touches -- unknown means not permutable, never a guess.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable

import torch

from engine.nets import infer_layout as L
from engine.nets.infer_labels import Label
from engine.nets.infer_layout import Ctx, Labels, broadcast, reshape

__all__ = ["RULES", "apply_rule", "op_name"]

#: Ops that return their first argument's values unchanged in layout.
_IDENTITY = {"clone", "contiguous", "alias", "detach", "lift_fresh_copy", "_to_copy", "to", "type_as", "dropout",
             "feature_dropout", "alpha_dropout", "softmax", "_softmax", "log_softmax", "_log_softmax",
             "_safe_softmax", "view_as", "identity", "_native_batch_norm_legit_no_training_out"}
#: Reductions that do not care about the order of the reduced entries.
_REDUCTIONS = {"mean", "sum", "amax", "amin", "var", "std", "logsumexp", "prod", "norm", "linalg_vector_norm"}
#: Tensors made from nothing: constant along every axis, or not.
_CONSTANT = {"zeros", "ones", "full", "new_ones", "new_zeros", "new_full", "zeros_like", "ones_like",
             "full_like", "scalar_tensor", "empty_like", "new_empty"}
_FRESH = {"arange", "randn", "rand", "randint", "empty", "randn_like", "rand_like", "linspace", "eye", "tensor"}
_NO_OUTPUT = {"_assert_tensor_metadata", "_assert_scalar", "sym_constrain_range_for_size", "_assert_async",
              "sym_size", "sym_numel", "sym_stride"}


def _reduction(ctx: Ctx, args, shapes) -> Labels:
    """``sum``/``mean``/``amax``... over ``args[1]`` (an axis, a list, or all axes when absent);
    keepdim is read off the output's rank."""
    dims = args[1] if len(args) > 1 and isinstance(args[1], int | list | tuple) else None
    return _reduce(ctx, args[0], dims, len(ctx.shapes) == len(shapes[0]) and len(ctx.shapes) > 0)


def _reduce(ctx: Ctx, x: Labels, dims, keepdim: bool) -> Labels:
    dims = range(len(x)) if dims is None or dims == [] else dims
    dims = {L.axis_of(d, len(x)) for d in ([dims] if isinstance(dims, int) else dims)}
    return tuple(ctx.k.any_label(1) if i in dims else label for i, label in enumerate(x)
                 if keepdim or i not in dims)


# ---------------------------------------------------------------- layers


def linear(ctx, x, w, b=None):
    ctx.unify(x[-1], w[1], "the input features of a linear layer")
    if b is not None:
        ctx.unify(b[0], w[0], "a linear layer's bias")
    return x[:-1] + (w[0],)


def mm(ctx, a, b):
    ctx.unify(a[1], b[0], "a matrix product's inner axis")
    return (a[0], b[1])


def matmul(ctx, a, b, shapes):
    sa, sb = shapes
    if len(sa) < 2 or len(sb) < 2:
        ctx.fix(a + b, "aten.matmul with a vector operand")
        return ctx.fixed(ctx.shapes)
    ctx.unify(a[-1], b[-2], "a matrix product's inner axis")
    batch = broadcast(ctx, [(a[:-2], sa[:-2]), (b[:-2], sb[:-2])], tuple(ctx.shapes[:-2]), "batched matmul")
    return batch + (a[-2], b[-1])


def conv(ctx, x, w, b, groups: int, transposed: bool):
    """Output channels follow the weight's axis 0; input channels its axis 1. A depthwise conv
    (one input channel per group) keeps each channel's perm, scaled by its channel multiplier;
    other grouped convs are kept fixed (a perm must keep every channel in its group)."""
    spatial = len(w) - 2
    ctx.fix(w[2:], "convolution kernel taps", listed=False)
    c_in = ctx.k.length_of(x[-spatial - 1])
    if groups == 1 and not transposed:
        ctx.unify(x[-spatial - 1], w[1], "a convolution's input channels")
        out_ch = w[0]
    elif groups == 1:
        ctx.unify(x[-spatial - 1], w[0], "a transposed convolution's input channels")
        out_ch = w[1]
    elif groups == c_in and not transposed:
        c_out = ctx.k.length_of(w[0])
        out_ch = ctx.k.scale(x[-spatial - 1], c_out // c_in)
        ctx.unify(w[0], out_ch, "a depthwise convolution's channels")
    else:
        ctx.fix((x[-spatial - 1],) + w[:2], f"a grouped convolution (groups={groups}) mixes channels within groups")
        out_ch = ctx.k.fixed_label(ctx.shapes[-spatial - 1])
    if b is not None:
        ctx.unify(b[0], out_ch, "a convolution's bias")
    return x[:-spatial - 1] + (out_ch,) + ctx.fixed(ctx.shapes[-spatial:])


def norm_channels(ctx, x, params, axis: int, what: str):
    for p in params:
        if p is not None:
            ctx.unify(x[axis], p[0], what)
    return x


def layer_norm(ctx, x, shape, w=None, b=None):
    """LayerNorm over the last axes is equivariant to any perm of them (the mean and
    variance do not depend on the order); its affine parameters follow."""
    for p in (w, b):
        if p is not None:
            for i in range(len(shape)):
                ctx.unify(x[len(x) - len(shape) + i], p[i], "a LayerNorm's parameters")
    return x


def group_norm(ctx, x, groups: int, w=None, b=None):
    """GroupNorm: with one group (or one channel per group) any channel perm commutes;
    otherwise channels may move only as whole groups (a block perm of the groups)."""
    c = ctx.k.length_of(x[1])
    channels = x[1]
    if 1 < groups < c:
        channels = ctx.k.scale(ctx.k.divide(x[1], c // groups, ctx.reason("GroupNorm groups")), c // groups)
    return norm_channels(ctx, x[:1] + (channels,) + x[2:], (w, b), 1, "a GroupNorm's parameters")


def embedding(ctx, w, idx):
    ctx.fix((w[0],), "embedding rows are looked up by token id", listed=False)
    return idx + (w[1],)


def sdpa(ctx, q, k, v, mask=None, shapes=()):
    ctx.unify(q[-1], k[-1], "attention's query/key features")
    ctx.unify(k[-2], v[-2], "attention's key/value positions")
    for a in (k, v):
        for i in range(1, len(q) - 1):
            if len(a) > i + 1 and shapes[0][-i - 2] == shapes[1 if a is k else 2][-i - 2]:
                ctx.unify(q[-i - 2], a[-i - 2], "attention heads")
    out = q[:-1] + (v[-1],)
    if mask is not None:
        scores = q[:-1] + (k[-2],)
        broadcast(ctx, [(mask, shapes[3]), (scores, tuple(shapes[0][:-1]) + (shapes[1][-2],))],
                  tuple(shapes[0][:-1]) + (shapes[1][-2],), "an attention mask")
    return out


def einsum(ctx, equation: str, operands, shapes):
    """Every index letter is one perm across all operands (a contraction sums over it, so any
    perm applied alike to both sides leaves the sum unchanged)."""
    lhs, _, rhs = equation.replace(" ", "").partition("->")
    terms = lhs.split(",")
    if "..." in equation:
        ctx.fix(tuple(label for labels in operands for label in labels), "aten.einsum with '...'")
        return ctx.fixed(ctx.shapes)
    if "->" not in equation:
        rhs = "".join(sorted(c for c in set(lhs) - {","} if lhs.count(c) == 1))
    letters: dict[str, Label] = {}
    for term, labels, shape in zip(terms, operands, shapes):
        for c, label, n in zip(term, labels, shape):
            if n == 1:
                continue
            letters[c] = ctx.unify(letters[c], label, "an einsum index") if c in letters else label
    return tuple(letters.get(c, ctx.k.any_label(n)) for c, n in zip(rhs, ctx.shapes))


def pool(ctx, x, spatial: int):
    """Pooling, resampling: each channel on its own, the spatial axes rearranged (and fixed)."""
    return x[:-spatial] + ctx.fixed(ctx.shapes[-spatial:])


def _pad(ctx, x, pad):
    """Padding the last ``len(pad) // 2`` axes: those become fixed, the others keep their perm."""
    padded = len(pad) // 2
    ctx.fix(x[len(x) - padded:], "padding adds entries at fixed positions")
    return x[:len(x) - padded] + ctx.fixed(ctx.shapes[len(x) - padded:])


# ---------------------------------------------------------------- dispatch


def _bn(ctx, x, w, b, rm, rv, *_):
    return norm_channels(ctx, x, (w, b, rm, rv), 1, "a BatchNorm's parameters and running statistics")


RuleFn = Callable[..., object]

#: op name (overload packet, without "aten.") -> rule(ctx, args, shapes) returning labels
RULES: dict[str, RuleFn] = {
    "getitem": lambda c, a, s: a[0][a[1]],
    "linear": lambda c, a, s: linear(c, a[0], a[1], a[2] if len(a) > 2 else None),
    "mm": lambda c, a, s: mm(c, a[0], a[1]),
    "addmm": lambda c, a, s: broadcast(c, [(a[0], s[0]), (mm(c, a[1], a[2]), tuple(c.shapes))], c.shapes, "addmm"),
    "bmm": lambda c, a, s: matmul(c, a[0], a[1], s[:2]),
    "matmul": lambda c, a, s: matmul(c, a[0], a[1], s[:2]),
    "baddbmm": lambda c, a, s: broadcast(c, [(a[0], s[0]), (matmul(c, a[1], a[2], s[1:3]), tuple(c.shapes))],
                                         c.shapes, "baddbmm"),
    "conv1d": lambda c, a, s: conv(c, a[0], a[1], _at(a, 2), _at(a, 6, 1), False),
    "conv2d": lambda c, a, s: conv(c, a[0], a[1], _at(a, 2), _at(a, 6, 1), False),
    "conv3d": lambda c, a, s: conv(c, a[0], a[1], _at(a, 2), _at(a, 6, 1), False),
    "convolution": lambda c, a, s: conv(c, a[0], a[1], a[2], a[8], a[6]),
    "batch_norm": lambda c, a, s: _bn(c, *a[:5]),
    "_native_batch_norm_legit_no_training": lambda c, a, s: [_bn(c, *a[:5])] + [c.any(sh) for sh in c.shapes[1:]],
    "layer_norm": lambda c, a, s: layer_norm(c, a[0], a[1], _at(a, 2), _at(a, 3)),
    "native_layer_norm": lambda c, a, s: [layer_norm(c, a[0], a[1], a[2], a[3])] + [c.any(sh) for sh in c.shapes[1:]],
    "rms_norm": lambda c, a, s: layer_norm(c, a[0], a[1], _at(a, 2)),
    "group_norm": lambda c, a, s: group_norm(c, a[0], a[1], _at(a, 2), _at(a, 3)),
    "embedding": lambda c, a, s: embedding(c, a[0], a[1]),
    "scaled_dot_product_attention": lambda c, a, s: sdpa(c, a[0], a[1], a[2], _at(a, 3), s),
    "einsum": lambda c, a, s: einsum(c, a[0], a[1], s[1]),
    "view": lambda c, a, s: reshape(c, a[0], s[0], c.shapes),
    "reshape": lambda c, a, s: reshape(c, a[0], s[0], c.shapes),
    "_unsafe_view": lambda c, a, s: reshape(c, a[0], s[0], c.shapes),
    "flatten": lambda c, a, s: reshape(c, a[0], s[0], c.shapes),
    "unflatten": lambda c, a, s: reshape(c, a[0], s[0], c.shapes),
    "t": lambda c, a, s: tuple(reversed(a[0])),
    "transpose": lambda c, a, s: L.transpose(a[0], a[1], a[2]),
    "permute": lambda c, a, s: L.permute(a[0], a[1]),
    "unsqueeze": lambda c, a, s: L.unsqueeze(c, a[0], a[1]),
    "squeeze": lambda c, a, s: L.squeeze(c, a[0], s[0], _at(a, 1)),
    "expand": lambda c, a, s: L.expand(c, a[0], s[0], a[1]),
    "select": lambda c, a, s: L.select(c, a[0], a[1], a[2]),
    "slice": lambda c, a, s: L.slice_axis(c, a[0], s[0], *a[1:]),
    "split": lambda c, a, s: L.split(c, a[0], s[0], a[1], _at(a, 2, 0)),
    "split_with_sizes": lambda c, a, s: L.split(c, a[0], s[0], a[1], _at(a, 2, 0)),
    "chunk": lambda c, a, s: L.chunk(c, a[0], s[0], a[1], _at(a, 2, 0)),
    "cat": lambda c, a, s: L.cat(c, a[0], s[0], _at(a, 1, 0)),
    "concat": lambda c, a, s: L.cat(c, a[0], s[0], _at(a, 1, 0)),
    "stack": lambda c, a, s: L.stack(c, a[0], s[0], _at(a, 1, 0)),
    "max_pool1d": lambda c, a, s: pool(c, a[0], 1),
    "max_pool2d": lambda c, a, s: pool(c, a[0], 2),
    "avg_pool1d": lambda c, a, s: pool(c, a[0], 1),
    "avg_pool2d": lambda c, a, s: pool(c, a[0], 2),
    "adaptive_avg_pool1d": lambda c, a, s: pool(c, a[0], 1),
    "adaptive_avg_pool2d": lambda c, a, s: pool(c, a[0], 2),
    "adaptive_max_pool2d": lambda c, a, s: [pool(c, a[0], 2)] * 2,
    "max_pool2d_with_indices": lambda c, a, s: [pool(c, a[0], 2)] * 2,
    "native_dropout": lambda c, a, s: [a[0], a[0]],
    "constant_pad_nd": lambda c, a, s: _pad(c, a[0], a[1]),
    "pad": lambda c, a, s: _pad(c, a[0], a[1]),
    "reflection_pad1d": lambda c, a, s: _pad(c, a[0], a[1]),
    "reflection_pad2d": lambda c, a, s: _pad(c, a[0], a[1]),
    "replication_pad1d": lambda c, a, s: _pad(c, a[0], a[1]),
    "replication_pad2d": lambda c, a, s: _pad(c, a[0], a[1]),
    "upsample_nearest2d": lambda c, a, s: pool(c, a[0], 2),
    "upsample_bilinear2d": lambda c, a, s: pool(c, a[0], 2),
    "upsample_nearest1d": lambda c, a, s: pool(c, a[0], 1),
}


def _at(args, i, default=None):
    return args[i] if len(args) > i and args[i] is not None else default


def op_name(target) -> str:
    """``aten.linear.default`` -> ``linear``; ``operator.getitem`` -> ``getitem``."""
    if target is operator.getitem:
        return "getitem"
    packet = getattr(target, "overloadpacket", None)
    name = getattr(packet, "__name__", None) or getattr(target, "__name__", str(target))
    return re.sub(r"^aten\.", "", name)


def apply_rule(target, ctx: Ctx, args, shapes):
    """Labels of a node's output(s); ``args`` hold labels for tensors, plain values otherwise.

    An op without a rule, or whose rule does not fit the arguments it got, fixes every
    class it touches.
    """
    name = op_name(target)
    base = name[:-1] if name.endswith("_") and not name.startswith("_") else name  # in-place variants
    try:
        out = _dispatch(target, base, ctx, args, shapes)
    except (IndexError, KeyError, TypeError, ValueError, ZeroDivisionError, AssertionError):
        out = None if ctx.shapes is None else _MISFIT
    if out is _MISFIT or not _fits(out, ctx.shapes, ctx.k):
        return unknown(ctx, name, args, shapes)
    return out


_MISFIT = object()


def _dispatch(target, base: str, ctx: Ctx, args, shapes):
    if base in _NO_OUTPUT:
        return None
    if base in RULES:
        return RULES[base](ctx, args, shapes)
    if base in _IDENTITY:
        return args[0]
    if base in _CONSTANT:
        return _constant(ctx, ctx.any)
    if base in _FRESH:
        return _constant(ctx, ctx.fixed)
    if base in _REDUCTIONS:
        return _reduction(ctx, args, shapes)
    if isinstance(target, torch._ops.OpOverload) and torch.Tag.pointwise in target.tags \
            and isinstance(ctx.shapes, tuple):
        tensors = [(a, s) for a, s in zip(args, shapes) if isinstance(s, tuple)]
        return broadcast(ctx, tensors, ctx.shapes, f"elementwise {op_name(target)}")
    return _MISFIT


def _fits(out, shapes, k) -> bool:
    """Whether a rule's labels match the traced output: one label per axis, each as long as the axis."""
    if shapes is None:
        return True
    if isinstance(shapes, list):
        return isinstance(out, list) and len(out) == len(shapes) and all(
            _fits(o, s, k) for o, s in zip(out, shapes) if s is not None)
    return isinstance(out, tuple) and len(out) == len(shapes) and all(
        k.length_of(label) == n for label, n in zip(out, shapes))


def unknown(ctx: Ctx, name: str, args, shapes):
    """An op no rule covers: every class it touches is fixed (and listed), its outputs are fixed."""
    for a, s in zip(args, shapes):
        for labels in (a if isinstance(s, list) else [a] if isinstance(s, tuple) else []):
            if isinstance(labels, tuple):
                ctx.fix(labels, f"aten.{name} is not known to commute with permutations")
    return _constant(ctx, ctx.fixed)


def _constant(ctx: Ctx, make):
    if isinstance(ctx.shapes, list):
        return [make(s) if s is not None else None for s in ctx.shapes]
    return make(ctx.shapes) if ctx.shapes is not None else None
