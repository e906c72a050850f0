"""Functional evaluation, the machinery every probe shares.

A model's parameters as one flat vector (:class:`ParamLayout`) and the loss/accuracy of
many vectors at once (:func:`evaluate_points`; a plane with the first layer reused,
:func:`evaluate_plane`; a path with BatchNorm handled, :mod:`.path_eval`), organised by the
:class:`Evaluator` (data chunking, loop or ``vmap``). Also Lanczos and BatchNorm
statistics reset.
"""

from .bn_reset import bn_reset_batches, has_batchnorm, reset_bn_stats
from .evaluator import Evaluator
from .functional import (
    BNMode,
    LossFn,
    ParamLayout,
    Strategy,
    default_loss,
    fast_default_loss,
    flatten_params,
    functional_module,
    is_mean_cross_entropy,
    resolve_data,
    run_loss,
    shallow_copy,
    split_state,
    unflatten_params,
)
from .lanczos import LanczosResult, lanczos, ritz, ritz_converged
from .module_chain import CHAIN_ACTIVATIONS, LinearChain, leaf_calls, linear_chain
from .path_eval import (
    check_bn,
    evaluate_line,
    evaluate_states,
    lerp_buffers,
    lerp_flat,
    path_buffers,
    path_states,
    reset_inputs,
    split_name,
)
from .plane_eval import FirstLayer, evaluate_plane, evaluate_plane_with_strategy, find_first_layer
from .point_eval import evaluate_points

__all__ = [
    "BNMode",
    "CHAIN_ACTIVATIONS",
    "Evaluator",
    "FirstLayer",
    "LanczosResult",
    "LinearChain",
    "LossFn",
    "ParamLayout",
    "Strategy",
    "bn_reset_batches",
    "check_bn",
    "default_loss",
    "evaluate_plane",
    "evaluate_plane_with_strategy",
    "evaluate_points",
    "evaluate_line",
    "evaluate_states",
    "fast_default_loss",
    "find_first_layer",
    "flatten_params",
    "functional_module",
    "is_mean_cross_entropy",
    "has_batchnorm",
    "lanczos",
    "leaf_calls",
    "linear_chain",
    "ritz_converged",
    "lerp_buffers",
    "lerp_flat",
    "path_buffers",
    "path_states",
    "reset_bn_stats",
    "reset_inputs",
    "resolve_data",
    "run_loss",
    "ritz",
    "shallow_copy",
    "split_name",
    "split_state",
    "unflatten_params",
]
