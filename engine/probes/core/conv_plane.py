"""Points of a plane or a line over the built-in 1-D ConvNet as plain tensor operations, in row blocks.

The MNIST-1D ``cnn1d`` (conv -> [BatchNorm] -> ReLU -> [2x max pool] blocks, mean over positions,
linear head) is evaluated here without ``functional_call`` and without oneDNN, the way
:mod:`engine.probes.core.mlp_plane` evaluates MLPs:

- activations are kept channels-last, ``(rows, positions, channels)``, in zero-padded buffers, so a
  convolution of kernel ``k`` is ``k`` accumulated matrix products over row-shifted views of the
  flattened buffer (``out[i] = sum_t X[i + t] W_t``; ``p = k // 2`` zero rows between samples pad
  both neighbours, and the ``p`` output rows there are computed and unused). The first convolution
  is one product of the input's windows (made once) with the point's weights, its even and odd
  positions stacked, so its pool is the maximum of two halves;
- the inputs carry a constant channel of ones, so a bias is one more row of its convolution's
  weights (:func:`_product_weights`) instead of a pass that copies it into the output;
- each pool is taken before its ReLU (``relu(max(u, v)) = max(relu u, relu v)`` exactly), written
  straight into the next block's padded buffer; where a C compiler is, the first block (convolution,
  pool and ReLU) and each later pool with its ReLU are one compiled loop each
  (:mod:`engine.probes.core.native`, float32), else PyTorch's ``mm``, ``maximum`` and ``relu_``;
- BatchNorm with running statistics is folded into the convolution (``s * W``, ``s * (b - mean) +
  beta``, ``s = gamma / sqrt(var + eps)``); the mean over positions is folded into the head, which
  runs class-major so the logits are scored by
  :func:`~engine.probes.core.cpu_kernels.cross_entropy_and_accuracy` where it is fast;
- the data go through the whole network in blocks of rows small enough for a block's activations to
  stay in the core's cache (chosen by measurement, :func:`_block_rows`), and the views every block
  uses are made once per thread and block size.

On a 2-core Intel Xeon (Sapphire Rapids, 2 MB of L2 a core) a point of the width-32 MNIST-1D CNN's
41 x 41 surface (4,000 rows) takes 9.1-9.7 ms at one thread against 18.6 ms through
``functional_call`` with the CPU kernels, and 5.2-5.5 ms at two against 10.6; a 25-point
interpolation of the width-64 CNN with BatchNorm, 819 against 1,393 ms at one thread and 450 against
747 at two (``bench/results/*issue19_cnnfast*``). On a faster VM of the same kind, the shared padding
rows and the class-major scorer took that interpolation from 662 to 615 ms at one thread and from 402
to 315 at two (``*issue19_sharedpad*``); its products then ran at 168 GFLOP/s, 81% of the dense
one-thread rate, and the pools and ReLUs took 14% of the time. Per block the chain is 12 tensor calls; with two
point workers their Python (under the GIL) costs ~15% (two processes: 4.8 ms a point). Measured and
not kept: combining the first layer's kept outputs (``Z_a + b Z2``, read from memory: 13-14.5
against 12-12.4 ms a point in a first version), oneDNN's channels-last ``conv2d`` (equal to the
shifted products), products of position pairs (64 x 64 weights: 10-15% slower), one K=96 product
over an im2col buffer the pool fills with two copies (the product runs at the matmul peak, the
copies cost more than it saves) and a bias added by ``addmm`` (its copy of the bias into the output
was 1.2 ms a point). Which models qualify: :func:`~engine.probes.core.conv_chain.conv_chain`; the
chain is only used after it reproduced the model's output at three points on the first 64 rows,
and the results equal the generic path up to float rounding (the sums run in another order).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call

from engine.probes.core import native
from engine.probes.core.conv_chain import ConvChain, ConvStep, conv_chain
from engine.probes.core.cpu_kernels import ClassMajorScore
from engine.probes.core.evaluator import EVAL_MEMORY_BYTES, Evaluator
from engine.probes.core.point_parallel import best_seconds, remember_choice

__all__ = ["conv_line_point", "conv_plane_point"]

#: Rows per block tried (:meth:`_Runner._block_rows`); a block's activations are about 15 KB a row on the MNIST-1D CNN.
_BLOCK_CANDIDATES = (128, 256, 512, 1024)
_CHECK_ROWS = 64


def _entries(chain: ConvChain) -> list[tuple[str, tuple[int, ...]]]:
    """(name, shape) of the chain's parameters, in the order of :func:`_to_chain`'s vector: per
    block the product weights (:func:`_product_weights`), then BatchNorm's scale and shift; the head."""
    out = []
    for i, s in enumerate(chain.steps):
        out.append((f"{i}.w", (s.c_in * s.k + 1, s.c_out)))
        out += [(f"{i}.g", (s.c_out,)), (f"{i}.beta", (s.c_out,))] if s.affine else []
    last = chain.steps[-1]
    out.append(("head.w", (chain.n_out, last.out_length * last.c_out)))
    out += [("head.b", (chain.n_out, 1))] if chain.head_bias else []
    return out


def _bias_row(i: int, s: ConvStep) -> int:
    """The row of block ``i``'s product weights that holds its bias (see :func:`_product_weights`)."""
    return s.c_in * s.k if i == 0 else s.c_in * (s.k // 2 + 1)


def _tap_rows(s: ConvStep, t: int) -> tuple[int, int]:
    """Rows of a later block's product weights that multiply its input at tap ``t``; the middle tap's
    include the bias row (the input's constant channel)."""
    p = s.k // 2
    lo = t * s.c_in + (t > p)
    return lo, lo + s.c_in + (t == p)


def _product_weights(i: int, s: ConvStep, w: Tensor, b: Tensor | None) -> Tensor:
    """Block ``i``'s convolution weight ``(c_out, c_in, k)`` and bias as the ``(c_in k + 1, c_out)``
    right factor of its products. The inputs carry a constant channel of ones, so the bias is one
    more row (zeros without a bias) and no product starts from a copy of it (``addmm`` copies its
    bias into the output first: a pass over the block's largest activation). The first block's rows
    follow its windows' features, ``(c_in, k)``, then the bias; a later block's are its taps, each
    ``(c_in, c_out)``, with the bias after the middle tap's."""
    bias = torch.zeros(s.c_out, dtype=w.dtype) if b is None else b
    if i == 0:
        return torch.cat([w.reshape(s.c_out, -1).T, bias[None]])
    taps, p = w.permute(2, 1, 0), s.k // 2  # (k, c_in, c_out)
    return torch.cat([taps[: p + 1].reshape(-1, s.c_out), bias[None], taps[p + 1 :].reshape(-1, s.c_out)])


def _to_chain(chain: ConvChain, p: Mapping[str, Tensor]) -> Tensor:
    """The chain's parameter vector (:func:`_entries`) for the model-level parameters ``p``:
    a linear map of them (weights laid out for the products, the head divided by the positions it
    averages and repeated over them), so it commutes with ``theta0 + a * d1 + b * d2`` up to rounding."""
    parts = []
    for i, s in enumerate(chain.steps):
        parts.append(_product_weights(i, s, p[f"{s.path}.conv.weight"], p[f"{s.path}.conv.bias"] if s.bias else None))
        parts += [p[f"{s.norm}.weight"], p[f"{s.norm}.bias"]] if s.affine else []
    positions = chain.steps[-1].out_length
    parts.append(p[f"{chain.head}.weight"].repeat(1, positions) / positions)  # (n_out, positions * c): mean folded
    parts += [p[f"{chain.head}.bias"]] if chain.head_bias else []
    return torch.cat([t.reshape(-1) for t in parts])


def _windows(chain: ConvChain, x: Tensor) -> Tensor:
    """The first convolution's input windows, ``(N * r, c_in * k + 1)``: a sample's ``r`` rows hold
    ``x[s, :, l - p : l + p + 1]`` for each output position ``l`` (zero padded), flattened, and a 1
    (the bias's factor); with a pool, its even positions then its odd ones (the positions the pool
    drops left out)."""
    s = chain.steps[0]
    n = len(x)
    win = nn.functional.pad(x, (s.k // 2, s.k // 2)).unfold(2, s.k, 1).permute(0, 2, 1, 3)  # (N, L, c_in, k)
    if s.pool:
        half = s.length // 2
        win = win[:, : 2 * half].reshape(n, half, 2, s.c_in, s.k).transpose(1, 2)  # (N, 2, L // 2, c_in, k)
    win = win.reshape(-1, s.c_in * s.k)
    return torch.cat([win, torch.ones_like(win[:, :1])], 1)


def _unpacked(flat: Tensor, entries: list[tuple[str, tuple[int, ...]]]) -> dict[str, Tensor]:
    out, at = {}, 0
    for name, shape in entries:
        size = int(torch.Size(shape).numel())
        out[name] = flat[at : at + size].view(shape)
        at += size
    return out


class _Work:
    """One thread's activations for a block of ``n`` rows, and every view a block's operations use
    (made once: a view costs a call too): each later block's zero-padded channels-last input
    (:func:`_padded_rows`, ``p`` zero rows between samples) whose last channel is a constant 1 (the
    bias's factor), and one buffer every convolution writes its output into (each is dead once
    pooled, so a block's activations take less of the cache). The last block's output goes to rows of the point's
    ``(N, positions, channels)`` buffer, given per block (:func:`_block`)."""

    def __init__(self, chain: ConvChain, n: int, dtype: torch.dtype):
        first, later = chain.steps[0], chain.steps[1:]
        rows = 2 * (first.length // 2) if first.pool else first.length
        sizes = [n * rows * first.c_out] + [_padded_rows(s, n) * s.c_out for s in later]
        arena = torch.empty(max(sizes), dtype=dtype)
        self.first = arena[: sizes[0]].view(n * rows, first.c_out)
        pads = [torch.zeros(_padded_rows(s, n), s.c_in + 1, dtype=dtype) for s in later]
        for pad in pads:
            pad[:, -1] = 1
        dsts = [_by_sample(pad, s, n)[:, : s.length, : s.c_in] for pad, s in zip(pads, later)] + [None]
        if first.pool:
            u = self.first.view(n, 2, first.length // 2, first.c_out)  # even positions, then odd
            self.acts = [(u[:, 0], u[:, 1], dsts[0])]
        else:
            self.acts = [(self.first.view(n, first.length, first.c_out), None, dsts[0])]
        self.convs, self.outs, self.dsts = [], [], dsts  # outs: each later block's (n, L, c_out) output
        for s, x, dst in zip(later, pads, dsts[1:]):
            stride = s.length + s.k // 2
            m = n * stride - s.k // 2  # output row i = sample i // (L + p), position i % (L + p)
            out = arena[: n * stride * s.c_out].view(n * stride, s.c_out)
            taps = [x[t : t + m, : hi - lo] for t, (lo, hi) in enumerate(_tap_rows(s, t) for t in range(s.k))]
            self.convs.append((taps, out[:m]))
            ov = out.view(n, stride, s.c_out)  # positions L.. of a sample: rows between samples, not used
            self.outs.append(ov[:, : s.length])
            half = s.length // 2
            self.acts.append((ov[:, 0 : 2 * half : 2], ov[:, 1 : 2 * half : 2], dst) if s.pool
                             else (ov[:, : s.length], None, dst))


def _padded_rows(s: ConvStep, n: int) -> int:
    """Rows of a later block's padded input for ``n`` samples: ``p = k // 2`` zero rows, then each
    sample's ``L`` positions followed by ``p`` zero rows, which pad both the sample before them and
    the one after (``p`` shared rows between samples rather than ``2p``: fewer rows in every product)."""
    return n * (s.length + s.k // 2) + s.k // 2


def _by_sample(pad: Tensor, s: ConvStep, n: int) -> Tensor:
    """The ``(n, L + p, c_in + 1)`` view of a padded input (:func:`_padded_rows`) whose ``[:, :L]`` are
    the samples' positions."""
    p = s.k // 2
    return pad[p:].view(n, s.length + p, s.c_in + 1)


def _pool(u: Tensor, v: Tensor | None, dst: Tensor) -> None:
    """``dst = max(u, v)``, or ``u``: the ReLU comes after (``relu(max(u, v)) = max(relu u, relu v)``)."""
    if v is None:
        dst.copy_(u)
    else:
        torch.maximum(u, v, out=dst)


def _activate(u: Tensor, v: Tensor | None, dst: Tensor) -> None:
    """``dst = relu(max(u, v))`` (pool before ReLU: equal bit for bit), or ``relu(u)``."""
    if v is None:
        torch.clamp_min(u, 0, out=dst)  # what relu computes
        return
    torch.maximum(u, v, out=dst)
    dst.relu_()


class _Thread(threading.local):
    """One thread's point: its chain vector (written by each point), the weights the products use
    (views of it, or BatchNorm-folded copies), the last block's output and the logits for all rows,
    its blocks' activations by size, and ``theta0 + a * d1`` of the plane's current grid row."""

    def __init__(self, chain: ConvChain, n: int, dtype: torch.dtype):
        entries = _entries(chain)
        self.params = torch.empty(sum(int(torch.Size(s).numel()) for _, s in entries), dtype=dtype)
        v = _unpacked(self.params, entries)
        self.weights, self.folds = [], []
        for i, s in enumerate(chain.steps):
            w = v[f"{i}.w"]  # (c_in k + 1, c_out)
            if s.norm is not None:
                folded = torch.empty_like(w)
                self.folds.append((s, w, v.get(f"{i}.g"), v.get(f"{i}.beta"), folded, folded[_bias_row(i, s)]))
                w = folded
            self.weights.append(w if i == 0 else [w[lo:hi] for lo, hi in (_tap_rows(s, t) for t in range(s.k))])
        self.head = v["head.w"], v.get("head.b")
        last = chain.steps[-1]
        self.last = torch.empty(n, last.out_length, last.c_out, dtype=dtype)
        self.logits = torch.empty(chain.n_out, n, dtype=dtype)
        self.works: dict[int, _Work] = {}
        self.spans: dict[tuple[int, int], list] = {}  # (rows, block) -> [(windows, work, last rows)]
        self.a, self.row = None, None


def _fold(st: _Thread, buffers: Mapping[str, Tensor]) -> None:
    """BatchNorm with running statistics folded into its convolution: ``s * W`` and ``s * (b - mean) + beta``
    with ``s = gamma / sqrt(var + eps)`` (the bias row of the product weights scaled with them, then shifted)."""
    for s, w, gamma, beta, w_out, bias_out in st.folds:
        scale = torch.add(buffers[f"{s.norm}.running_var"], s.eps).rsqrt_()
        if gamma is not None:
            scale.mul_(gamma)
        torch.mul(w, scale, out=w_out)  # scales the output channels (the last axis), the bias row too
        mean = buffers[f"{s.norm}.running_mean"]
        bias_out.add_(mean.mul(scale).neg_() if beta is None else torch.addcmul(beta, mean, scale, value=-1))


def _block(work: _Work, st: _Thread, windows: Tensor, last: Tensor) -> None:
    """The network up to the last pool on one block of rows: ``windows`` its first-convolution
    windows, ``last`` its rows of the last block's output (pooled, the ReLU not yet applied)."""
    torch.mm(windows, st.weights[0], out=work.first)
    acts = work.acts
    for (xs, out), ws, act in zip(work.convs, st.weights[1:], acts):
        _activate(*act)  # the previous block's output, into this block's padded input
        _convolve(xs, ws, out)
    _pool(acts[-1][0], acts[-1][1], last)


def _convolve(xs: list[Tensor], ws: list[Tensor], out: Tensor) -> None:
    """``out = sum_t xs[t] @ ws[t]``: a later block's convolution, one product per tap."""
    torch.mm(xs[0], ws[0], out=out)
    for x, w in zip(xs[1:], ws[1:]):
        out.addmm_(x, w)


def _native_block(work: _Work, st: _Thread, first: Callable, pools: list[Callable]) -> None:
    """:func:`_block` with the compiled loops (:mod:`~engine.probes.core.native`): ``first`` the first
    block's convolution, pool and ReLU, ``pools`` each later block's pool and ReLU, each written into the
    next block's padded input or the span's rows of the last output (ReLU applied)."""
    first()
    for (xs, out), ws, pool in zip(work.convs, st.weights[1:], pools):
        _convolve(xs, ws, out)
        pool()


#: Rows per block chosen per (chain, rows, dtype, threads), measured once per process
#: (at most point_parallel.CHOICES_KEPT of them).
_BLOCK_CHOICE: dict[tuple, int] = {}


class _Runner:
    """The chain over an evaluator's data: its first-convolution windows (made once) and each thread's state."""

    def __init__(self, chain: ConvChain, ev: Evaluator, rows: int | None):
        self.chain, self.ev, self.rows = chain, ev, rows
        self.native = native.kernels() if ev.x.dtype == torch.float32 else None
        if self.native is None:
            self.windows = _windows(chain, ev.x)
            self.per_row = len(self.windows) // len(ev.x)
        else:  # the compiled first block reads the zero-padded input itself
            pad = chain.steps[0].k // 2
            self.padded = nn.functional.pad(ev.x, (pad, pad)).contiguous()  # (N, c_in, L + 2p)
        self.local = _Thread(chain, len(ev.x), ev.x.dtype)
        # the class-major logits scored in place where the loss is a mean cross-entropy: against the
        # evaluator's scoring of their transpose, 1.0 against ~0.1 ms at one thread (4,000 rows)
        self.scorer = ClassMajorScore.exact_for(ev.loss_fn, ev.y, chain.n_out) if ev.classification else None

    def logits(self, st: _Thread, buffers: Mapping[str, Tensor], n: int, block: int) -> Tensor:
        """Class-major logits ``(n_out, n)`` of the first ``n`` rows at the point in ``st.params``."""
        _fold(st, buffers)
        spans = st.spans.get((n, block)) or self._spans(st, n, block)
        for run, *args in spans:
            run(*args)
        last = st.last[:n]
        if self.native is None:
            last.relu_()  # the last block's ReLU, once for all rows (the compiled loops apply it)
        hw, hb = st.head
        flat = last.view(n, -1).T  # (positions * c, n)
        logits = st.logits[:, :n]
        torch.mm(hw, flat, out=logits) if hb is None else torch.addmm(hb, hw, flat, out=logits)
        return logits

    def _spans(self, st: _Thread, n: int, block: int) -> list:
        """The blocks of the first ``n`` rows as ``(function, *arguments)``: each block by :func:`_block`,
        or with the compiled loops all blocks as one plan (every product and loop in one call, without
        the GIL) where the BLAS's ``sgemm_`` is found, else each by :func:`_native_block`. Compiled
        calls hold this thread's buffers' addresses."""
        blocks = []
        for lo in range(0, n, block):
            hi = min(n, lo + block)
            work = st.works.get(hi - lo)
            if work is None:
                work = st.works[hi - lo] = _Work(self.chain, hi - lo, st.params.dtype)
            blocks.append((lo, hi, work))
        k = self.native
        if k is None:
            r = self.per_row
            spans = [(_block, work, st, self.windows[lo * r : hi * r], st.last[lo:hi]) for lo, hi, work in blocks]
        else:
            ops = [(work, self._native_ops(st, work, self.padded[lo:hi], st.last[lo:hi])) for lo, hi, work in blocks]
            whole = k.plan([op for _, block_ops in ops for op in block_ops])
            spans = [(whole,)] if whole is not None else [
                (_native_block, work, st, k.call(block_ops[0]), [k.call(op) for op in block_ops if op.code == 3])
                for work, block_ops in ops]
        st.spans[(n, block)] = spans
        return spans

    def _native_ops(self, st: _Thread, work: _Work, padded: Tensor, last: Tensor) -> list:
        """One block's steps for the compiled loops: the first block, then per later block its
        products (one per tap) and its pool with ReLU."""
        k, steps, w0 = self.native, self.chain.steps, st.weights[0]
        dsts = [last if d is None else d for d in work.dsts]
        ops = [k.conv_op(padded, w0[:-1], w0[-1], steps[0].pool, dsts[0])]
        for (xs, out), ws, o, s, dst in zip(work.convs, st.weights[1:], work.outs, steps[1:], dsts[1:]):
            ops += [k.gemm_op(x, w, out, t > 0) for t, (x, w) in enumerate(zip(xs, ws))]
            ops.append(k.pool_op(o, s.pool, dst))
        return ops

    def evaluate(self, st: _Thread, buffers: Mapping[str, Tensor], score: Callable) -> tuple[Tensor, Tensor]:
        """Loss and accuracy at the point in ``st.params`` over all rows: the logits scored by the
        class-major scorer where it applies, else by ``score`` (an evaluator's, on their transpose)."""
        n = len(self.ev.x)
        logits = self.logits(st, buffers, n, self._block_rows(st, buffers))
        return score(logits.T, self.ev.y) if self.scorer is None else self.scorer(logits)

    def _block_rows(self, st: _Thread, buffers: Mapping[str, Tensor]) -> int:
        """Rows per block: as asked, else the fastest of :data:`_BLOCK_CANDIDATES` on this point, timed
        once per process for each chain, data size, dtype and thread count on the thread that asks
        (a point worker times it as points run). Smaller blocks keep the activations in the core's
        cache, larger ones make fewer calls."""
        n = len(self.ev.x)
        if self.rows is not None:
            return max(1, min(self.rows, n))
        key = (self.chain, n, st.params.dtype, torch.get_num_threads(), self.native is not None)
        chosen = _BLOCK_CHOICE.get(key)
        if chosen is None:
            sizes = sorted({min(c, n) for c in _BLOCK_CANDIDATES})
            part = min(n, 2 * sizes[-1])  # the first rows only: a block's cost does not depend on the others
            seconds = {}
            for size in sizes:
                self.logits(st, buffers, part, size)  # makes this size's activations, warms its kernels
                seconds[size] = best_seconds(lambda size=size: self.logits(st, buffers, part, size), 2)
            chosen = remember_choice(_BLOCK_CHOICE, key, min(seconds, key=seconds.get))
            st.works = {k: w for k, w in st.works.items() if k in (chosen, n % chosen)}
            st.spans = {}
        return chosen

    def agrees(self, points: list[tuple[Tensor, dict[str, Tensor], Mapping[str, Tensor]]]) -> bool:
        """Whether the chain reproduces the model on the first rows at each ``(chain vector,
        model parameters, buffers)`` of ``points``."""
        n, st = min(_CHECK_ROWS, len(self.ev.x)), self.local
        try:
            with torch.no_grad():
                for vec, params, buffers in points:
                    st.params.copy_(vec)
                    mine = self.logits(st, buffers, n, n).T
                    theirs = functional_call(self.ev.module, {**params, **buffers}, (self.ev.x[:n],))
                    if mine.shape != theirs.shape or not torch.allclose(mine, theirs, rtol=1e-4, atol=1e-5):
                        return False
        except Exception:  # noqa: BLE001 - any failure means the chain does not apply
            return False
        finally:
            st.works.pop(n, None)
            st.spans.pop((n, n), None)
        return True


def _runner(ev: Evaluator, rows: int | None, flats: tuple[Tensor, ...]
            ) -> tuple[_Runner, list[Tensor]] | None:
    """The runner for ``ev``'s chain and each flat parameter vector of ``flats`` in the chain's
    layout, or None when the chain does not apply (refused, too large, or a layout without the
    chain's names or shapes)."""
    chain = conv_chain(ev)
    if chain is None:
        return None
    s = chain.steps[0]
    if len(ev.x) * s.length * s.c_in * s.k * ev.x.element_size() > EVAL_MEMORY_BYTES // 4:
        return None  # the first convolution's windows would take too much memory
    try:
        with torch.no_grad():
            vecs = [_to_chain(chain, ev.layout.unflatten(t)) for t in flats]
    except (KeyError, RuntimeError):  # a layout without the chain's names or shapes
        return None
    return _Runner(chain, ev, rows), vecs


def conv_plane_point(ev: Evaluator, theta0: Tensor, d1: Tensor, d2: Tensor, coords: Tensor,
                     rows: int | None = None) -> Callable | None:
    """A point function ``(a, b) -> (loss, acc)`` for the plane loop over the built-in 1-D ConvNet,
    or None when :func:`conv_chain` refuses the model or the chain does not reproduce it (first 64
    rows) at both ends of ``coords`` (G, 2) and at (0.7, -0.3). ``rows``: rows per block (measured
    when None)."""
    found = _runner(ev, rows, (theta0, d1, d2))
    if found is None:
        return None
    runner, vecs = found
    checks = [tuple(float(c) for c in coords[0]), tuple(float(c) for c in coords[-1]), (0.7, -0.3)]
    if not runner.agrees([(vecs[0] + a * vecs[1] + b * vecs[2], ev.layout.unflatten(theta0 + a * d1 + b * d2),
                           ev.buffers) for a, b in checks]):
        return None

    def point(ai: Tensor, bi: Tensor) -> tuple[Tensor, Tensor]:
        st, a = runner.local, float(ai)
        if a != st.a:  # grid points come row by row: theta0 + a * d1 once a row, per thread
            st.a, st.row = a, torch.add(vecs[0], vecs[1], alpha=a)
        torch.add(st.row, vecs[2], alpha=float(bi), out=st.params)
        return runner.evaluate(st, ev.buffers, ev.score)

    return point


def conv_line_point(ev: Evaluator, flat_a: Tensor, flat_b: Tensor,
                    checks: list[tuple[Tensor, float, Mapping[str, Tensor]]],
                    rows: int | None = None) -> Callable | None:
    """A point function ``(mine, theta, alpha) -> (loss, acc)`` for points ``lerp(flat_a, flat_b, alpha)``
    of a line over the built-in 1-D ConvNet, each with the buffers of the evaluator ``mine`` (BatchNorm
    statistics interpolated or reset: folded either way), or None as :func:`conv_plane_point`; the chain
    must reproduce the model at each ``(theta, alpha, buffers)`` of ``checks``."""
    found = _runner(ev, rows, (flat_a, flat_b))
    if found is None:
        return None
    runner, ends = found
    if not runner.agrees([(torch.lerp(*ends, alpha), ev.layout.unflatten(theta), buffers)
                          for theta, alpha, buffers in checks]):
        return None

    def point(mine: Evaluator, theta: Tensor, alpha: float) -> tuple[Tensor, Tensor]:
        st = runner.local
        torch.lerp(*ends, alpha, out=st.params)
        return runner.evaluate(st, mine.buffers, mine.score)

    return point
