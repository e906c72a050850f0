"""Faster CPU kernels for a few small layers, equal to PyTorch's up to float rounding.

:class:`engine.probes.core.evaluator.Evaluator` swaps them into its (shallow-copied) module
when it evaluates on a CPU; the caller's module is never changed. Measurements behind each
choice are in ``bench/results/core_measurements.md``.

They are faster forward, not differentiated: with gradients enabled (Hessian-vector
products, gradients through the evaluator) the pooling kernels run PyTorch's own layers.
The double backward of the strided maximum doubled the cost of a Hessian-vector product on
the MNIST-1D CNN (62.7 against 33.4 ms at one thread, 31.0 against 16.9 at two;
``bench/results/core_measurements.md``).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from engine.probes.core.functional import is_mean_cross_entropy, shallow_copy
from engine.probes.core.point_parallel import best_seconds, remember_choice

__all__ = ["ClassMajorScore", "NarrowLinear", "PairMaxPool1d", "PoolFirstConvBlock", "TapConv1d",
           "cross_entropy_and_accuracy", "hooked", "with_cpu_kernels"]


class NarrowLinear(nn.Linear):
    """A ``Linear`` with few outputs, computed as ``(W x^T + b)^T``: the same products, summed alike.

    On a CPU a ``(N, 100) x (100, 10)`` product is a poor shape for the BLAS (the transposed
    ``(10, 100) x (100, N)`` runs in well under half the time), and the logits come out laid
    out class-major, along which the loss reductions are fast too.
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 2:
            return super().forward(x)
        if self.bias is None:
            return torch.mm(self.weight, x.T).T
        return torch.addmm(self.bias[:, None], self.weight, x.T).T


class PairMaxPool1d(nn.MaxPool1d):
    """``MaxPool1d(2)`` (stride 2, no padding) as the maximum of the even and odd positions.

    The same values bit for bit (a maximum is exact), about twice as fast on a CPU as
    ``max_pool1d``'s kernel.
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 3 or torch.is_grad_enabled():  # differentiated: max_pool1d's backward is the cheaper
            return super().forward(x)
        even = x[..., 0 : x.shape[-1] - 1 : 2]  # an odd last position is dropped, as max_pool1d does
        return torch.maximum(even, x[..., 1::2])


NARROW_OUT = 32  # Linear layers with at most this many outputs run transposed on a CPU


def _under_vmap(*tensors: Tensor | None) -> bool:
    return any(t is not None and torch._C._functorch.is_batchedtensor(t) for t in tensors)


class TapConv1d(nn.Conv1d):
    """A ``Conv1d`` with one input channel as a sum of shifted copies of its input, one per tap,
    where that measures faster.

    ``out[n, c, l] = b[c] + sum_k w[c, 0, k] x[n, 0, l + k - p]``: ``kernel_size`` broadcast
    multiply-adds writing the ``(N, C, L)`` output in place. On one Intel Xeon oneDNN ran this
    shape at 2-3 GFLOP/s (1 -> 64 channels, kernel 3, 374 MNIST-1D rows: 1.88 ms; the taps 0.88 ms);
    on another VM of the same kind oneDNN was the faster (w=32: 2.7 against 5.5 ms a point at one
    thread). So the taps are used only where they measured faster, once per process for each input
    shape, weight shape, dtype and thread count (:func:`_taps_faster`). Equal to the convolution up
    to the order of the kernel's sum. Forward only: with gradients enabled it is PyTorch's own.
    """

    def _conv_forward(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        if (torch.is_grad_enabled() or x.ndim != 3 or x.shape[1] != 1 or _under_vmap(x, weight, bias)
                or not _taps_faster(self, x, weight, bias)):
            return super()._conv_forward(x, weight, bias)  # differentiated, or batched: vmap has no rule for addcmul_
        return self._taps(x, weight, bias)

    def _taps(self, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        pad, taps = self.padding[0], weight.shape[-1]
        xp = nn.functional.pad(x, (pad, pad)) if pad else x
        length = xp.shape[-1] - taps + 1
        w = weight[None, :, 0, :]  # (1, C, taps)
        first = xp[:, :, 0:length]  # (N, 1, L)
        tap = w[:, :, 0:1]
        out = torch.mul(first, tap) if bias is None else torch.addcmul(bias[None, :, None], first, tap)
        for k in range(1, taps):
            out.addcmul_(xp[:, :, k : k + length], w[:, :, k : k + 1])
        return out


#: Whether the taps beat the library's convolution, per (input shape, weight shape, dtype, padding, threads);
#: at most point_parallel.CHOICES_KEPT of them.
_TAPS_CHOICE: dict[tuple, bool] = {}


def _taps_faster(conv: TapConv1d, x: Tensor, weight: Tensor, bias: Tensor | None) -> bool:
    """Measured once per key on the thread that asks (a point worker times it as points run): the
    faster of three calls of each, after one of each."""
    key = (tuple(x.shape), tuple(weight.shape), bias is not None, x.dtype, x.device.type, conv.padding,
           torch.get_num_threads())
    chosen = _TAPS_CHOICE.get(key)
    if chosen is None:
        def taps() -> Tensor:
            return conv._taps(x, weight, bias)

        def library() -> Tensor:
            return nn.Conv1d._conv_forward(conv, x, weight, bias)

        taps(), library()
        chosen = remember_choice(_TAPS_CHOICE, key, best_seconds(taps, 3) < best_seconds(library, 3))
    return chosen


class PoolFirstConvBlock(nn.Module):
    """The built-in ``ConvBlock`` (``engine/nets/cnn.py``: conv -> norm -> act -> pool) with a
    ReLU and a 2-wide max pool, pooling before the ReLU.

    ``max(relu(u), relu(v)) = relu(max(u, v))`` exactly (ReLU is monotone; NaN propagates
    through both), so the values are equal bit for bit while the ReLU runs on half as many
    values, in place on the pool's new output: on the MNIST-1D CNN the ReLU before the pool
    was 18% of a point's CPU time (``bench/results/core_measurements.md``). With BatchNorm in
    evaluation mode the norm is folded into the conv (:func:`_folded`; equal up to float
    rounding, no longer bit for bit). A block gets this class in the evaluator's private copy;
    its submodules stay as they are.
    """

    def forward(self, x: Tensor) -> Tensor:
        if torch.is_grad_enabled():  # differentiated: the block's own order (see the module's docstring)
            return self.pool(self.act(self.norm(self.conv(x))))
        folded = _folded(self.conv, self.norm)
        z = self.norm(self.conv(x)) if folded is None else self.conv._conv_forward(x, *folded)
        return torch.relu_(self.pool(z))


def hooked(m: nn.Module) -> bool:
    from torch.nn.modules import module as _module  # the global hooks live there

    return bool(m._forward_pre_hooks or m._forward_hooks or _module._global_forward_pre_hooks
                or _module._global_forward_hooks)


def _folded(conv: nn.Module, norm: nn.Module) -> tuple[Tensor, Tensor] | None:
    """The weight and bias of ``conv`` followed by ``norm`` when that is BatchNorm with running
    statistics (evaluation mode), else None.

    Evaluation-mode BatchNorm is a per-channel affine map, ``s * z + t`` with
    ``s = gamma / sqrt(var + eps)`` and ``t = beta - mean * s``, so conv then norm is one conv
    with weight ``s * W`` and bias ``s * b + t``: equal up to float rounding, and it saves a
    pass over the block's largest activation (BatchNorm was 13% of a point of the MNIST-1D CNN
    with BatchNorm at one thread).
    """
    if not isinstance(norm, nn.modules.batchnorm._BatchNorm) or norm.training or norm.running_var is None:
        return None
    if not isinstance(conv, nn.modules.conv._ConvNd) or hooked(conv) or hooked(norm):
        return None  # someone watches the modules run (a trace of the call order, activation sizes)
    scale = torch.rsqrt(norm.running_var + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight
    shift = -norm.running_mean * scale
    if norm.bias is not None:
        shift = shift + norm.bias
    weight = conv.weight * scale.reshape(-1, *([1] * (conv.weight.ndim - 1)))
    bias = shift if conv.bias is None else torch.addcmul(shift, conv.bias, scale)
    return weight, bias


def _is_pool_first_block(m: nn.Module) -> bool:
    """Whether ``m`` is the built-in ConvBlock with a ReLU and a 2-wide max pool (recognised by
    its class's module and name: the probes do not import the nets)."""
    cls = type(m)
    return ((cls.__module__, cls.__qualname__) == ("engine.nets.cnn", "ConvBlock")
            and type(getattr(m, "act", None)) is nn.ReLU and isinstance(getattr(m, "pool", None), nn.MaxPool1d)
            and _cpu_kernel(m.pool) is PairMaxPool1d)


def _cpu_kernel(m: nn.Module) -> type[nn.Module] | None:
    """The faster, equal class for module ``m`` on a CPU, if there is one."""
    if type(m) is nn.Linear and m.out_features <= NARROW_OUT:
        return NarrowLinear
    if (type(m) is nn.Conv1d and m.in_channels == 1 and m.groups == 1 and m.stride == (1,) and m.dilation == (1,)
            and m.padding_mode == "zeros" and isinstance(m.padding, tuple) and m.kernel_size[0] <= 9):
        return TapConv1d
    if _is_pool_first_block(m):
        return PoolFirstConvBlock
    if (type(m) is nn.MaxPool1d and m.kernel_size in (2, (2,)) and m.stride in (2, (2,)) and m.padding in (0, (0,))
            and m.dilation in (1, (1,)) and not m.ceil_mode and not m.return_indices):
        return PairMaxPool1d
    return None


def with_cpu_kernels(module: nn.Module, *, private: bool = False) -> nn.Module:
    """``module`` with narrow Linear layers made :class:`NarrowLinear`, one-channel 1-D
    convolutions :class:`TapConv1d`, 2-wide max pools
    :class:`PairMaxPool1d` and built-in conv blocks :class:`PoolFirstConvBlock`: changed in
    place when ``private`` (a copy nobody else holds),
    else in a shallow copy (tensors shared)."""
    swaps = [(n, k) for n, m in module.named_modules() if (k := _cpu_kernel(m)) is not None]
    if not swaps:
        return module
    if not private:
        module = shallow_copy(module)
    for name, kind in swaps:
        module.get_submodule(name).__class__ = kind
    return module


def cross_entropy_and_accuracy(out: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy and argmax accuracy of ``(N, C)`` logits, sharing one max per row.

    Equal to :func:`~engine.probes.core.functional.fast_default_loss` and ``(out.argmax(1) == y).mean()`` up to float
    rounding: ``max(1)`` gives each row's largest logit and its first index, the class
    ``argmax`` picks, ties and NaN included. On class-major logits (see :class:`NarrowLinear`)
    ``max(1)`` is over an order of magnitude faster than ``argmax(1)``, and the loss is
    ``F.cross_entropy`` of the logits as one ``(1, C, N)`` image: ``log_softmax`` along the
    classes with the samples contiguous, one call in place of nine passes (:func:`_class_major_score`).
    """
    if out.ndim == 2 and out.shape[1] > 1 and out.T.is_contiguous() and not _under_vmap(out):
        return _class_major_score(out.T, y)
    top, pred = out.max(1)
    shift = top.nan_to_num(0.0, 0.0, 0.0)  # a row of infinities or NaN is not shifted
    target = out.gather(1, y[:, None])[:, 0]
    # shift - target first: exact for close logits, where log(sum) + shift would round the loss to a unit of shift
    loss = ((out - shift[:, None]).exp().sum(1).log() + (shift - target)).mean()
    return loss, (pred == y).to(loss.dtype).mean()


def _class_major_score(logits: Tensor, y: Tensor) -> tuple[Tensor, Tensor]:
    """:func:`cross_entropy_and_accuracy` of class-major ``(C, N)`` logits.

    Few, long operations: in a landscape's point the small ones cost several times what they
    cost timed alone (their code and data are cold after the products) and, on the one-thread
    point workers, each takes the GIL. On one core for 4,000 x 10 logits the previous nine-pass
    loss plus ``max`` took 150 us alone and ~210 us in a point (~440 with two workers); this,
    ~130 alone, ~210 in a point and ~270-340 with two workers (``bench/results/core_measurements.md``).
    """
    loss = nn.functional.cross_entropy(logits[None], y[None])  # (1, C, N)
    return loss, (logits.max(0)[1] == y).to(loss.dtype).mean()


class ClassMajorScore:
    """Mean cross-entropy and first-argmax accuracy of a point's class-major ``(C, N)`` logits, in few,
    long passes: what :func:`~engine.probes.core.cpu_kernels.cross_entropy_and_accuracy` computes, up
    to float rounding, for targets all in ``[0, C)``.

    With ``m`` each sample's largest logit and ``e = logits - m`` (0 exactly where a logit equals
    the maximum, negative elsewhere), the loss is ``log(sum_c exp(e_c)) - e_y`` (``- e_y`` apart
    from the log: a confident sample's small loss is not rounded to a unit of ``m``). A sample is
    classified right, as argmax (the first maximum) classifies it, when ``e_y == 0`` and no earlier
    class is also a maximum: ``max(e_c, c < y) < 0``, one ``amax`` of ``e`` plus a mask of 0 and
``-inf``. Where a column has no
    finite maximum (a NaN or infinite logit; the loss is then NaN) the accuracy is ``max(0)``'s, as
    in the general path.

    On one core for the 4,000 x 10 logits of the width-100 MNIST-1D MLP (``bench/mlp_point_profile.py``,
    ``bench/surface_bound.py``): 53 us alone against 154 for ``cross_entropy_and_accuracy`` (and 81
    for the fastest formulation timed before); inside a 41 x 41 surface's point 127-140 us against
    211 for ``F.cross_entropy`` of a ``(1, C, N)`` image plus ``max(0)`` (75-100 us: its indices along
    the short axis) and the comparison; a point 1,015-1,077 against 1,173 us. Counting the zeros of
    ``e`` to find ties instead (``count_nonzero``: 19 us alone, 65 in a point) or ``torch.where``
    for the mask (85 us alone) cost more than they saved.
    """

    def __init__(self, y: Tensor, classes: int):
        self.y, self.n = y, len(y)
        self.at = y.long() * self.n + torch.arange(self.n, device=y.device)  # flat index of (y_i, i) in (C, N)
        after = torch.arange(classes, device=y.device)[:, None] >= y[None, :]  # (C, N): y_i and the classes after it
        self.before = torch.zeros(after.shape, device=y.device).masked_fill_(after, -math.inf)  # 0 before y_i

    @classmethod
    def exact_for(cls, loss_fn, y: Tensor, classes: int) -> ClassMajorScore | None:
        """The scorer of ``(classes, len(y))`` logits where it computes ``loss_fn``'s value (up to float
        rounding): ``loss_fn`` one of this library's mean cross-entropies
        (:func:`~engine.probes.core.functional.is_mean_cross_entropy`), ``y`` class ids in
        ``[0, classes)``, at least two classes; else None."""
        if classes < 2 or not is_mean_cross_entropy(loss_fn, y, classes):
            return None
        return cls(y, classes)

    def many(self, logits: Tensor) -> tuple[Tensor, Tensor]:
        """Loss and accuracy, each ``(k,)``, of ``k`` points' class-major logits ``(k, C, N)``: the
        scorer's dozen calls once for all ``k`` points (each call a point makes costs a GIL hand-over
        on the point workers)."""
        e = logits - logits.amax(1, keepdim=True)
        target = e.view(len(e), -1).index_select(1, self.at)  # e_y, (k, N)
        earlier = (e + self.before).amax(1)  # the largest e_c with c < y_i (-inf for y_i = 0)
        loss = e.exp_().sum(1).log_().sub_(target).mean(1)
        # right: e_y == 0 and earlier < 0, i.e. sign(e_y) - sign(earlier) == 1 (it is 1, 0 or -1 otherwise)
        acc = target.sign_().sub_(earlier.sign_()).clamp_min_(0).mean(1)
        bad = loss.isnan()
        if bool(bad.any()):  # no finite maximum somewhere: argmax's own handling of NaN and infinities
            for j in bad.nonzero().reshape(-1).tolist():
                acc[j] = (logits[j].max(0)[1] == self.y).to(acc.dtype).mean()
        return loss, acc

    def __call__(self, logits: Tensor) -> tuple[Tensor, Tensor]:
        """Loss and accuracy of one point's ``(C, N)`` logits (:meth:`many` of one)."""
        loss, acc = self.many(logits[None])
        return loss[0], acc[0]
