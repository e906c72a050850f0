"""Functional dimension of a network and its hidden symmetries: the geometry of the map
from parameters to functions.

The realisation map ``theta -> F_theta`` sends a parameter vector (``D`` numbers) to the
function the network computes. Its local dimension at ``theta``, the **functional
dimension**, is the rank of the Jacobian ``dF_theta(z) / dtheta`` stacked over enough
inputs ``z``. On a finite batch ``Z`` (``m`` inputs, ``n_out`` outputs) that rank is the
*batch* functional dimension, a lower bound on the functional dimension; it reaches it
once the batch is large and generic enough (every neuron's kink crossed, every linear
region sampled), which is why the inputs default to many more rows than parameters.

Known symmetries lower the dimension: permuting the neurons of a hidden layer is discrete
(it does not), while scaling a hidden ReLU neuron's incoming weights and bias by ``c > 0``
and its outgoing weights by ``1 / c`` is a one-dimensional family per neuron. So for a
fully-connected ReLU network of widths ``(n_0, n_1, ..., n_d)``

    functional dimension <= D - (n_1 + ... + n_{d-1})

(Grigsby, Lindsey, Meyerhoff and Wu 2022), and the rank on a batch is further at most
``m * n_out``. A network whose rank stays below that bound has **hidden symmetries**:
directions in parameter space, beyond permutations and scalings, along which the
function does not change (a dead neuron is the plainest example). Grigsby, Lindsey and
Rolnick (2023) prove that parameters without hidden symmetries exist whenever no layer is
narrower than the input, and find at random initialisation that the probability of none
falls toward 0 with depth and rises toward 1 with width and input dimension
(``bench/functional_dimension.py`` reproduces that trend).

Numerics: the Jacobian is computed in float64 with ``torch.func.jacrev`` over
``functional_call`` (the model is never mutated), chunked over the inputs, and its rank
counts the singular values above ``max(sv) * max(J.shape) * eps(float64)``, the default
tolerance of ``numpy.linalg.matrix_rank``.

References
----------
J. E. Grigsby, K. Lindsey and D. Rolnick, "Hidden symmetries of ReLU networks", ICML 2023
(arXiv:2306.06179).
J. E. Grigsby, K. Lindsey, R. Meyerhoff and C. Wu, "Functional dimension of feedforward
ReLU neural networks", arXiv:2209.04036 (2022).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, jacrev, vmap

from engine.probes.core import ParamLayout, functional_module, split_state

__all__ = [
    "FunctionalDimension",
    "FunctionalDimensionCurve",
    "functional_dimension",
    "functional_dimension_over_training",
    "parameter_jacobian",
    "scaling_symmetries",
]

# Leaf modules a "fully-connected ReLU network" may hold besides its Linear layers.
_POSITIVELY_HOMOGENEOUS = (nn.ReLU, nn.LeakyReLU)
_PASSIVE = (nn.Identity, nn.Flatten, nn.Dropout)


@dataclass(frozen=True)
class FunctionalDimension:
    """Rank of the parameter-to-output Jacobian on a batch, beside the bounds symmetries explain.

    Attributes
    ----------
    singular_values : np.ndarray, shape (min(n_rows, n_params),)
        Singular values of the Jacobian, descending (a scree plot).
    tolerance : float
        Singular values above it count: ``max(sv) * max(J.shape) * eps`` unless ``rtol`` was given.
    rank : int
        The batch functional dimension: singular values above ``tolerance``.
    n_params : int
        ``D``, the number of parameters.
    n_hidden_neurons : int
        Positive-scaling symmetries: one per hidden ReLU neuron.
    n_inputs, n_outputs : int
        Batch size ``m`` and outputs per input; the Jacobian has ``m * n_outputs`` rows.
    symmetry_bound : int
        ``n_params - n_hidden_neurons``: the most the known symmetries allow.
    bound : int
        ``min(symmetry_bound, m * n_outputs)``: the most this batch allows.
    dtype : str
        Precision of the Jacobian and its singular values.
    seconds : float
    """

    singular_values: np.ndarray
    tolerance: float
    rank: int
    n_params: int
    n_hidden_neurons: int
    n_inputs: int
    n_outputs: int
    symmetry_bound: int
    bound: int
    dtype: str
    seconds: float

    @property
    def n_rows(self) -> int:
        return self.n_inputs * self.n_outputs

    @property
    def deficit(self) -> int:
        """``bound - rank``: dimensions the known symmetries do not explain (0 when none)."""
        return self.bound - self.rank

    @property
    def has_hidden_symmetries(self) -> bool:
        """The rank falls short of the bound. On a batch this is evidence, not proof: a batch
        that misses a neuron's kink lowers the rank as a hidden symmetry would."""
        return self.rank < self.bound

    @property
    def batch_limited(self) -> bool:
        """The batch has fewer Jacobian rows than the symmetry bound, so it cannot reach it."""
        return self.n_rows < self.symmetry_bound


@dataclass(frozen=True)
class FunctionalDimensionCurve:
    """Functional dimension at several checkpoints of one run, on the same inputs.

    Attributes
    ----------
    steps : np.ndarray, shape (K,)
    ranks : np.ndarray, shape (K,)
    singular_values : np.ndarray, shape (K, r)
        One descending row per checkpoint.
    tolerances : np.ndarray, shape (K,)
    n_params, n_hidden_neurons, n_inputs, n_outputs, symmetry_bound, bound : int
        As in :class:`FunctionalDimension` (the same for every checkpoint).
    inputs : str
        Where the inputs came from ("gaussian", "data", or "given").
    dtype : str
    seconds : float
    """

    steps: np.ndarray
    ranks: np.ndarray
    singular_values: np.ndarray
    tolerances: np.ndarray
    n_params: int
    n_hidden_neurons: int
    n_inputs: int
    n_outputs: int
    symmetry_bound: int
    bound: int
    inputs: str
    dtype: str
    seconds: float

    def __len__(self) -> int:
        return len(self.steps)

    def at(self, i: int) -> FunctionalDimension:
        """The result at checkpoint ``i`` (``seconds`` is the whole curve's)."""
        return FunctionalDimension(
            self.singular_values[i], float(self.tolerances[i]), int(self.ranks[i]), self.n_params,
            self.n_hidden_neurons, self.n_inputs, self.n_outputs, self.symmetry_bound, self.bound, self.dtype,
            self.seconds)


def scaling_symmetries(model: nn.Module) -> int:
    """Hidden ReLU neurons of a fully-connected network: one positive scaling symmetry each.

    The network must be built from ``nn.Linear`` layers and ReLU (or leaky ReLU)
    activation modules, in registration order with the output layer last (an
    ``engine.nets`` MLP without BatchNorm, an ``nn.Sequential`` of Linear and ReLU).
    Every Linear layer but the last is hidden.

    Raises
    ------
    ValueError
        For any other architecture (convolutions, normalisation, other activations): its
        continuous symmetries differ; count them and pass ``n_hidden_neurons`` yourself.
    """
    linears, others, activations = [], [], 0
    for name, m in model.named_modules():
        if next(m.children(), None) is not None:
            continue  # only leaves compute
        if isinstance(m, nn.Linear):
            linears.append(m)
        elif isinstance(m, _POSITIVELY_HOMOGENEOUS):
            activations += 1
        elif not isinstance(m, _PASSIVE):
            others.append(f"{name or type(model).__name__} ({type(m).__name__})")
    hint = ("the positive-scaling count is inferred only for Linear + ReLU networks; "
            "count the continuous symmetries and pass n_hidden_neurons=...")
    if others:
        raise ValueError(f"{type(model).__name__} holds modules {others[:4]!r}; {hint}")
    if not linears:
        raise ValueError(f"{type(model).__name__} has no nn.Linear layer; {hint}")
    if len(linears) > 1 and activations == 0:
        raise ValueError(f"{type(model).__name__} has {len(linears)} Linear layers and no ReLU module "
                         f"(a functional relu, or a deep linear network, cannot be told apart); {hint}")
    return sum(m.out_features for m in linears[:-1])


def _cast(t: Tensor, dtype: torch.dtype) -> Tensor:
    return t.to(dtype) if t.is_floating_point() else t


def parameter_jacobian(
    model: nn.Module,
    params: Mapping[str, Tensor],
    inputs: Tensor,
    *,
    dtype: torch.dtype = torch.float64,
    chunk_size: int | None = None,
) -> Tensor:
    """Jacobian of the outputs on a batch with respect to the flat parameter vector.

    Parameters
    ----------
    model : nn.Module
        Architecture; evaluated with ``functional_call`` in eval mode, never mutated.
    params : dict
        Parameter dict or full state dict (buffers are taken from it, else from ``model``).
    inputs : Tensor, shape (m, *input_shape)
    dtype : torch.dtype
        Precision of parameters, buffers, floating inputs and the Jacobian.
    chunk_size : int, optional
        Inputs per vectorised call (``vmap``'s ``chunk_size``, bounds memory); all at once when None.

    Returns
    -------
    Tensor, shape (m * n_outputs, D)
        Row ``i * n_outputs + k`` is the gradient of output ``k`` at input ``i``; columns
        follow ``model.named_parameters()`` order (:class:`~engine.probes.core.ParamLayout`).
    """
    if inputs.ndim < 1 or len(inputs) == 0:
        raise ValueError(f"inputs must be a non-empty batch (m, *input_shape); got shape {tuple(inputs.shape)}")
    if chunk_size is not None and chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive integer or None; got {chunk_size!r}")
    params, buffers = split_state(model, params)
    layout = ParamLayout.from_params(params)
    theta = _cast(layout.flatten(params), dtype)  # (D,)
    buffers = {k: _cast(v, dtype).to(theta.device) for k, v in buffers.items()}
    x = _cast(inputs, dtype).to(theta.device)
    module = functional_module(model, "running")

    def outputs(flat: Tensor, xi: Tensor) -> Tensor:  # (D,), one input (...) -> (n_out,)
        return functional_call(module, ({**layout.unflatten(flat), **buffers},), (xi[None],)).reshape(-1)

    # per-input Jacobians under vmap: reverse mode needs n_out backward passes per input, not m * n_out
    per_input = vmap(jacrev(outputs), in_dims=(None, 0), chunk_size=chunk_size)
    return per_input(theta, x).reshape(-1, layout.numel)  # (m, n_out, D) -> (m * n_out, D)


def functional_dimension(
    model: nn.Module,
    params: Mapping[str, Tensor],
    inputs: Tensor,
    *,
    n_hidden_neurons: int | None = None,
    rtol: float | None = None,
    dtype: torch.dtype = torch.float64,
    chunk_size: int | None = None,
) -> FunctionalDimension:
    """Batch functional dimension: the rank of the parameter-to-output Jacobian on ``inputs``.

    Parameters
    ----------
    model : nn.Module
        Architecture (a fully-connected ReLU network, unless ``n_hidden_neurons`` is given).
    params : dict
        Parameter dict or state dict of ``model``.
    inputs : Tensor, shape (m, *input_shape)
        The batch ``Z``. Use at least ``symmetry_bound / n_outputs`` inputs (fewer warns),
        better twice the number of parameters over the outputs (the Landscape probe's
        default), drawn so that every neuron is active on some and inactive on others. Where
        kinks crowd together (few input dimensions) even that undercounts: grow the batch
        until the rank stops rising, as ``bench/functional_dimension.py`` does.
    n_hidden_neurons : int, optional
        Continuous positive-scaling symmetries; :func:`scaling_symmetries` of ``model`` when None.
    rtol : float, optional
        Relative tolerance on the singular values; ``max(J.shape) * eps(dtype)`` (NumPy's
        ``matrix_rank`` default) when None.
    dtype : torch.dtype
        float64 by default, so the rank is not an artefact of float32 round-off.
    chunk_size : int, optional
        Inputs per Jacobian call; see :func:`parameter_jacobian`.

    Returns
    -------
    FunctionalDimension

    References
    ----------
    Grigsby, Lindsey and Rolnick, "Hidden symmetries of ReLU networks", ICML 2023.
    """
    if rtol is not None and not rtol > 0:
        raise ValueError(f"rtol must be positive or None; got {rtol!r}")
    start = time.perf_counter()
    hidden = scaling_symmetries(model) if n_hidden_neurons is None else int(n_hidden_neurons)
    jac = parameter_jacobian(model, params, inputs, dtype=dtype, chunk_size=chunk_size)  # (m*n_out, D)
    n_rows, n_params = jac.shape
    if hidden < 0 or hidden >= n_params:
        raise ValueError(f"n_hidden_neurons must be in [0, {n_params}) for {n_params} parameters; got {hidden}")
    n_inputs = len(inputs)
    n_outputs = n_rows // n_inputs
    symmetry_bound = n_params - hidden
    if n_rows < symmetry_bound:
        need = math.ceil(symmetry_bound / n_outputs)
        warnings.warn(f"{n_inputs} inputs x {n_outputs} outputs = {n_rows} Jacobian rows cannot reach the symmetry "
                      f"bound {symmetry_bound}; the rank is at most {n_rows}. Pass at least {need} inputs "
                      f"(twice that to cross every neuron's kink).", stacklevel=2)
    sv = torch.linalg.svdvals(jac).cpu().numpy()  # (min(n_rows, D),), descending
    eps = torch.finfo(dtype).eps
    tolerance = float(sv.max(initial=0.0)) * (max(n_rows, n_params) * eps if rtol is None else rtol)
    return FunctionalDimension(
        singular_values=sv, tolerance=tolerance, rank=int((sv > tolerance).sum()), n_params=n_params,
        n_hidden_neurons=hidden, n_inputs=n_inputs, n_outputs=n_outputs, symmetry_bound=symmetry_bound,
        bound=min(symmetry_bound, n_rows), dtype=str(dtype).removeprefix("torch."),
        seconds=time.perf_counter() - start)


def functional_dimension_over_training(
    model: nn.Module,
    checkpoints: Sequence[Mapping[str, Tensor]],
    inputs: Tensor,
    *,
    steps: Sequence[int] | None = None,
    source: str = "given",
    progress: Callable[[float, str], None] | None = None,
    **kwargs,
) -> FunctionalDimensionCurve:
    """:func:`functional_dimension` at every checkpoint of a run, on the same ``inputs``.

    Parameters
    ----------
    checkpoints : sequence of dict
        Parameter or state dicts in training order (the first is often the initialisation).
    steps : sequence of int, optional
        Training step of each checkpoint.
    source : str
        Where ``inputs`` came from, recorded in the result ("gaussian", "data", ...).
    progress : callable, optional
        ``progress(fraction, message)`` after each checkpoint.
    **kwargs
        ``n_hidden_neurons``, ``rtol``, ``dtype``, ``chunk_size`` as in :func:`functional_dimension`.
    """
    if not checkpoints:
        raise ValueError("functional_dimension_over_training needs at least one checkpoint; got 0")
    if steps is not None and len(steps) != len(checkpoints):
        raise ValueError(f"got {len(steps)} steps for {len(checkpoints)} checkpoints")
    start = time.perf_counter()
    results = []
    for i, ckpt in enumerate(checkpoints):
        results.append(functional_dimension(model, ckpt, inputs, **kwargs))
        if progress is not None:
            progress((i + 1) / len(checkpoints),
                     f"checkpoint {i + 1}/{len(checkpoints)}: rank {results[-1].rank} of {results[-1].bound}")
    first = results[0]
    return FunctionalDimensionCurve(
        steps=np.arange(len(checkpoints)) if steps is None else np.asarray(steps),
        ranks=np.array([r.rank for r in results]), singular_values=np.stack([r.singular_values for r in results]),
        tolerances=np.array([r.tolerance for r in results]), n_params=first.n_params,
        n_hidden_neurons=first.n_hidden_neurons, n_inputs=first.n_inputs, n_outputs=first.n_outputs,
        symmetry_bound=first.symmetry_bound, bound=first.bound, inputs=source, dtype=first.dtype,
        seconds=time.perf_counter() - start)
