"""Hessian-vector products of a ReLU MLP's cross-entropy, written out by hand (Pearlmutter's R-operator).

For a plain chain ``Linear -> ReLU -> ... -> Linear`` under the mean cross-entropy, a product
``H v`` is a forward pass of the directional derivatives (the "R-forward") and a backward pass
of theirs (the "R-backward"), each a few matrix products per layer. Autograd's double backward
through the kept graph of the gradient (:class:`~engine.probes.landscape.curvature.HessianOperator`)
does the same products, but through one recorded operation at a time, each with its own
bookkeeping. On the MNIST-1D MLPs of ``bench/hessian_top.py`` (1,000 samples, trained) a
product took 1.9 ms by hand against 2.4 through autograd at width 100 (one thread; 1.2
against 1.6 on two) and 24 against 28 ms at width 512 (12.4 against 14.2), where the six
(1000 x 512) x (512 x 512) products alone need about 19 ms on one core
(``bench/results/hessian_top_issue19_hvp.txt``).

With ``z_l = a_{l-1} W_l^T + b_l``, ``a_l = D_l ⊙ z_l`` (``D_l`` the activation's slope,
0/1 for ReLU), ``p`` the softmax of the logits ``z_L``, ``g_l`` the loss' gradient with
respect to ``z_l`` and a direction ``v = (V_l, c_l)``::

    R-forward:  Rz_l = Ra_{l-1} W_l^T + a_{l-1} V_l^T + c_l,   Ra_l = D_l ⊙ Rz_l,   Ra_0 = 0
    output:     Rg_L = (p ⊙ Rz_L - p (p · Rz_L)) / N
    R-backward: Rg_{l-1} = D_{l-1} ⊙ (Rg_l W_l + g_l V_l)
    product:    (H v)_{W_l} = Rg_l^T a_{l-1} + g_l^T Ra_{l-1},   (H v)_{b_l} = sum_rows Rg_l

Exact: ReLU's second derivative is zero almost everywhere, and its slope at 0 is 0, the
conventions autograd uses. LeakyReLU works alike. Anything else (another activation,
buffers, a loss of the caller's own, a module called twice) keeps autograd.

References
----------
B. A. Pearlmutter, "Fast exact multiplication by the Hessian", Neural Computation 6 (1994).
N. N. Schraudolph, "Fast curvature matrix-vector products for second-order gradient
descent", Neural Computation 14 (2002).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from engine.probes.core import Evaluator, is_mean_cross_entropy, linear_chain

__all__ = ["ChainHessian", "ChainState"]

#: Data rows per forward pass of the check that the chain reproduces the model.
_CHECK_ROWS = 4096
#: Activations whose second derivative is zero where it exists (piecewise linear).
_PIECEWISE_LINEAR = (nn.ReLU, nn.LeakyReLU)


@dataclass(frozen=True)
class ChainState:
    """What a product needs of one data chunk at ``theta``, from one forward and backward pass.

    Attributes
    ----------
    inputs : list of Tensor
        ``a_{l-1}``, each layer's input (the flattened data first), shapes ``(n, d_{l-1})``.
    slopes : list of Tensor or None
        ``D_l`` for every layer but the last, shapes ``(n, d_l)`` (None: no activation).
    probs : Tensor, shape (n, C)
        Softmax of the logits.
    grads : list of Tensor or None
        ``g_l``, the mean loss' gradient with respect to ``z_l`` (None for the first layer,
        which no product needs).
    """

    inputs: list[Tensor]
    slopes: list[Tensor | None]
    probs: Tensor
    grads: list[Tensor | None]


class ChainHessian:
    """Exact Hessian-vector products of a ReLU MLP under the mean cross-entropy.

    Build with :meth:`of`, which returns None where the model or the loss is not one this
    handles. :meth:`state` runs the forward and backward pass on a data chunk once;
    :meth:`products` then forms ``H_c v`` for any number of vectors (the chunk's mean loss).
    """

    def __init__(self, ev: Evaluator, theta: Tensor, layers: list[tuple[str, str | None, list[nn.Module]]]):
        self._ev, self._layers = ev, layers
        params = ev.layout.unflatten(theta)
        self._weights = [params[w] for w, _, _ in layers]
        self._biases = [None if b is None else params[b] for _, b, _ in layers]

    @classmethod
    def of(cls, ev: Evaluator, theta: Tensor) -> ChainHessian | None:
        """The products for ``ev``'s model at ``theta``, or None when the model is not a plain
        chain of ``Linear`` layers and ReLU/LeakyReLU (``Identity`` and eval ``Dropout`` pass
        through) without buffers, the loss is not the library's mean cross-entropy on class
        ids, the dtype is not float32/float64, or the chain does not reproduce the model's
        logits on every data row."""
        if theta.dtype not in (torch.float32, torch.float64) or ev.x.dtype != theta.dtype:
            return None
        found = linear_chain(ev, theta)
        layers = None if found is None else _layers(found.steps)
        names = [n for w, b, _ in layers or [] for n in (w, b) if n is not None]
        if not layers or len(set(names)) != len(names) or not set(names) <= set(ev.layout.names):
            return None  # a weight shared between layers (its gradient sums both) or not a parameter
        chain = cls(ev, theta, layers)
        if not is_mean_cross_entropy(ev.loss_fn, ev.y, chain._weights[-1].shape[0]):
            return None
        return chain if chain._reproduces(theta) else None

    def _reproduces(self, theta: Tensor) -> bool:
        """Whether the chain's logits are the model's on every data row at ``theta``.

        Every row, not a few: what the forward pass does between the leaves (a flatten passes; a
        clamp of the inputs, a ``torch.where``) may change nothing on some rows and much on others,
        and at one point ``theta`` equal outputs on every row give equal Hessians (up to a set of
        measure zero). One forward pass of each, a fraction of one product's cost.
        """
        ev, params = self._ev, self._ev.layout.unflatten(theta)
        try:
            with torch.no_grad():
                for lo in range(0, len(ev.x), _CHECK_ROWS):
                    x = ev.x[lo : lo + _CHECK_ROWS]
                    mine, theirs = self.logits(x), ev.forward(params, x)
                    if (mine.shape != theirs.shape or mine.ndim != 2
                            or not torch.allclose(mine, theirs, rtol=1e-4, atol=1e-5)):
                        return False  # the forward pass does something between the leaves
        except (RuntimeError, ValueError):  # shapes that do not fit: not this chain
            return False
        return True

    def _forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor | None], Tensor]:
        """Layer inputs, slopes and logits on rows ``x``."""
        h, inputs, slopes = x.reshape(len(x), -1), [], []
        for (_, _, acts), w, b in zip(self._layers, self._weights, self._biases):
            inputs.append(h)
            h = torch.mm(h, w.T)  # (n, d_l)
            if b is not None:  # after the product: addmm's broadcast copy of b first cost more than the add
                h.add_(b)
            slope = None
            for act in acts:
                d = _slope(act, h)
                slope = d if slope is None else slope.mul_(d)
                h = act(h)
            slopes.append(slope)
        return inputs, slopes[:-1], h

    def logits(self, x: Tensor) -> Tensor:
        """The chain's output on rows ``x``."""
        return self._forward(x)[2]

    def state(self, lo: int, hi: int) -> ChainState:
        """Forward and backward pass on data rows lo:hi at ``theta``."""
        ev = self._ev
        with torch.no_grad():
            inputs, slopes, logits = self._forward(ev.x[lo:hi])
            # along the rows of the transposed logits: 7x faster on a CPU for 10 classes (PyTorch's
            # softmax kernel is slow along a short last axis), the same values
            probs = _flush_subnormal(torch.softmax(logits.T, 0).T)  # (n, C)
            g = probs.clone()
            g[torch.arange(hi - lo, device=g.device), ev.y[lo:hi]] -= 1
            _flush_subnormal(g.div_(hi - lo))
            grads: list[Tensor | None] = [None] * len(self._layers)
            for i in range(len(self._layers) - 1, 0, -1):
                grads[i] = g
                if i == 1:
                    break  # no product needs the first layer's
                g = torch.mm(g, self._weights[i])  # (n, d_{i-1})
                if slopes[i - 1] is not None:
                    g.mul_(slopes[i - 1])
        return ChainState(inputs, slopes, probs, grads)

    def products(self, s: ChainState, v: Tensor) -> Tensor:
        """``H_c v_i`` for every row of ``v`` (shape ``(k, P)``), ``H_c`` the Hessian of the chunk's mean loss."""
        out = torch.empty_like(v)
        with torch.no_grad():
            for i in range(len(v)):
                # The product of v's largest entry scaled into [0.5, 1), scaled back: the flush of
                # subnormal numbers (and the underflow of the matrix products) then drops what is
                # below ``tiny`` against entries of order 1, whatever v's size, so H (c v) = c H v
                # where the result is representable. Scaling by a power of two is exact (only the
                # exponent changes; subnormal entries move up exactly), so for c = 2^k the product
                # of c v is c times the product of v bit for bit.
                e = _exponent(v[i])
                if e == 0:
                    self._product(s, v[i], out[i])
                else:
                    self._product(s, v[i] * 2.0**-e, out[i])
                    out[i].mul_(2.0**e)
        return out

    def _product(self, s: ChainState, v: Tensor, out: Tensor) -> None:
        """``H_c v`` into ``out`` (shape ``(P,)``), by the R-forward and R-backward pass."""
        layout = self._ev.layout
        vs, outs = layout.unflatten(v), layout.unflatten(out)
        r_inputs: list[Tensor | None] = [None]  # Ra_{l-1}; the data do not depend on theta
        rz = None
        for i, (w_name, b_name, _) in enumerate(self._layers):
            rz = torch.mm(s.inputs[i], vs[w_name].T)  # (n, d_i)
            if r_inputs[i] is not None:
                rz.addmm_(r_inputs[i], self._weights[i].T)
            if b_name is not None:
                rz.add_(vs[b_name])
            if i < len(s.slopes):
                r_inputs.append(rz if s.slopes[i] is None else rz.mul_(s.slopes[i]))
        pr = s.probs * rz  # (n, C)
        rg = _flush_subnormal(pr.sub_(s.probs * pr.sum(1, keepdim=True)).div_(len(rz)))
        for i in range(len(self._layers) - 1, -1, -1):
            w_name, b_name, _ = self._layers[i]
            out_w = outs[w_name]  # (d_i, d_{i-1}), a view of ``out``
            torch.mm(rg.T, s.inputs[i], out=out_w)
            if r_inputs[i] is not None:
                out_w.addmm_(s.grads[i].T, r_inputs[i])
            if b_name is not None:
                torch.sum(rg, 0, out=outs[b_name])
            if i > 0:
                rg = torch.mm(rg, self._weights[i]).addmm_(s.grads[i], vs[w_name])  # (n, d_{i-1})
                if s.slopes[i - 1] is not None:
                    rg.mul_(s.slopes[i - 1])


def _layers(steps: list | None) -> list[tuple[str, str | None, list[nn.Module]]] | None:
    """``(weight, bias, activations after it)`` per Linear, or None unless the chain starts with a
    Linear and its activations are piecewise linear."""
    if not steps or steps[0][0] != "linear":
        return None
    layers = []
    for step in steps:
        if step[0] == "linear":
            layers.append((step[1], step[2], []))
        elif type(step[1]) in _PIECEWISE_LINEAR:
            layers[-1][2].append(step[1])
        else:
            return None
    return layers


def _flush_subnormal(t: Tensor) -> Tensor:
    """``t`` with its subnormal entries set to 0, in place.

    A trained classifier gives some classes probabilities below float32's smallest normal
    number (1.2e-38; 2e-42 seen on the MNIST-1D MLP), and their products with the directions
    come out subnormal too. A CPU computes with subnormal numbers one to two orders of
    magnitude slower: a (1000, 512) x (512, 512) product took 620 ms with its left factor
    subnormal instead of 2.9 ms, and a few such entries in the logits' derivatives made a whole
    product of the width-100 MLP 1.5x slower. What is dropped is below ``tiny`` in absolute
    value, against entries of order ``1/N`` (:meth:`ChainHessian.products` scales each vector's
    largest entry to about 1 first, so this holds for vectors of any size).
    """
    return t.masked_fill_(t.abs() < torch.finfo(t.dtype).tiny, 0)


def _exponent(v: Tensor) -> int:
    """``e`` with ``max |v|`` in ``[2^(e-1), 2^e)``, clipped so ``2^e`` and ``2^-e`` are normal
    numbers of ``v``'s dtype (126 for float32); 0 for a zero or non-finite ``v`` (not scaled).

    The largest entry, not the norm: it is exact, where a float32 norm of a vector of size 1e-30
    underflows (its squares) and one of size 1e20 overflows.
    """
    top = float(v.abs().max()) if v.numel() else 0.0
    if top == 0.0 or not math.isfinite(top):
        return 0
    limit = -math.frexp(torch.finfo(v.dtype).tiny)[1] + 1  # 126 for float32, 1022 for float64
    return min(max(math.frexp(top)[1], -limit), limit)


def _slope(act: nn.Module, h: Tensor) -> Tensor:
    """The activation's derivative at ``h``, as autograd takes it (0 or the negative slope at 0)."""
    if isinstance(act, nn.LeakyReLU):
        one, slope = (torch.tensor(c, dtype=h.dtype, device=h.device) for c in (1.0, act.negative_slope))
        return torch.where(h > 0, one, slope)
    return torch.gt(h, 0, out=torch.empty_like(h))  # 10x faster than (h > 0).to(h.dtype) on a CPU
