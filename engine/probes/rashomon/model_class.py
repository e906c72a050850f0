"""A small model class for tabular classification, and its regularised optimum.

The Rashomon set of a model class is sampled around the optimum of its training objective
(:func:`~engine.probes.rashomon.sampling.sample_rashomon_set`): these two functions give the
class (logistic regression or a one-hidden-layer tanh MLP) and the optimum (full-batch
L-BFGS on cross-entropy + L2 penalty, in float64).

References
----------
.. [1] L. Semenova, C. Rudin, R. Parr, "On the Existence of Simpler Machine Learning Models",
   FAccT, 2022 (Rashomon sets of model classes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch import Tensor, nn
from torch.func import functional_call

from engine.probes.core import default_loss

__all__ = ["fit_optimum", "model_class"]


def model_class(kind: Literal["logistic", "mlp"], d: int, n_classes: int, *, width: int = 8,
                seed: int = 0) -> nn.Module:
    """Logistic regression (``Linear(d, C)``) or a ``d-width-C`` tanh MLP, initialised from ``seed``.

    Tanh, not ReLU: the sampling ellipsoid needs curvature, and a ReLU network's Hessian is
    zero along many directions.

    Parameters
    ----------
    kind : {"logistic", "mlp"}
    d : int
        Number of input features.
    n_classes : int
        Number of classes C (the model outputs C logits).
    width : int, default 8
        Hidden units of the MLP.
    seed : int, default 0
        Seeds the initialisation only (the global RNG is left as it was).

    Returns
    -------
    nn.Module
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "logistic":
            return nn.Linear(d, n_classes)
        if kind == "mlp":
            return nn.Sequential(nn.Linear(d, width), nn.Tanh(), nn.Linear(width, n_classes))
    raise ValueError(f"model must be 'logistic' or 'mlp'; got {kind!r}")


def fit_optimum(model: nn.Module, data: tuple[Tensor, Tensor], *, start: Mapping[str, Tensor] | None = None,
                l2: float = 0.0, steps: int = 500) -> dict[str, Tensor]:
    """θ* minimising the loss + ``l2``·‖θ‖² by full-batch L-BFGS in float64.

    The loss is cross-entropy for integer labels, mean squared error for float targets.

    Parameters
    ----------
    model : nn.Module
        The architecture; its parameters are the starting point and it is not changed
        (evaluated with ``functional_call``).
    data : (x, y)
        x (N, D) float; y (N,) int64 class labels, or float regression targets.
    start : mapping name -> Tensor, optional
        Where L-BFGS starts; default the module's own parameters.
    l2 : float, default 0.0
        Penalty on the squared norm of all parameters (biases included).
    steps : int, default 500
        L-BFGS iterations at most (strong-Wolfe line search, history 50).

    Returns
    -------
    dict name -> Tensor
        The optimum's parameters, float64, detached.
    """
    x, y = data
    x = x.double()
    start = dict(model.named_parameters()) if start is None else start
    params = {k: v.detach().double().clone().requires_grad_(True) for k, v in start.items()}
    opt = torch.optim.LBFGS(list(params.values()), lr=1.0, max_iter=steps, history_size=50,
                            tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        out = functional_call(model, params, (x,))
        loss = default_loss(out, y) + l2 * sum(v.pow(2).sum() for v in params.values())
        loss.backward()
        return loss

    opt.step(closure)
    return {k: v.detach() for k, v in params.items()}
