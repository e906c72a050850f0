"""Mode connectivity: loss/accuracy along paths and their barriers, permutation alignment
(weight, activation and straight-through matching; the assignment solver), layer-wise
barriers, barrier matrices, merging, spawning/instability and singular-vector alignment."""

from .align import (
    Alignment,
    FunctionNotPreservedError,
    apply_alignment,
    apply_alignment_checked,
    check_function_preserved,
    weight_matching,
)
from .align_features import FeatureSite, activation_matching, feature_sites
from .align_ste import ste_matching
from .barrier_matrix import BarrierMatrix, barrier_matrix, find_basins
from .interpolation import BARRIER_DEFINITIONS, Barrier, InterpolationCurve, barrier, interpolate, resolve_alphas
from .lap import WarmAssignments, solve_assignment
from .layerwise import LayerwiseBarriers, layer_groups, layerwise_barriers
from .lmc import ALIGN_METHODS, PathComparison, align_models, compare_paths
from .merge import MergeResult, average_states, diagonal_fisher, fisher_merge, merge_models
from .singular_alignment import SingularAlignment, singular_vector_alignment
from .spawning import Instability, TrainState, instability_analysis, spawn, train_steps

__all__ = [
    "ALIGN_METHODS",
    "BARRIER_DEFINITIONS",
    "Alignment",
    "Barrier",
    "BarrierMatrix",
    "FeatureSite",
    "FunctionNotPreservedError",
    "Instability",
    "InterpolationCurve",
    "LayerwiseBarriers",
    "MergeResult",
    "PathComparison",
    "SingularAlignment",
    "TrainState",
    "WarmAssignments",
    "activation_matching",
    "align_models",
    "apply_alignment",
    "apply_alignment_checked",
    "average_states",
    "barrier",
    "barrier_matrix",
    "check_function_preserved",
    "compare_paths",
    "diagonal_fisher",
    "feature_sites",
    "find_basins",
    "fisher_merge",
    "instability_analysis",
    "interpolate",
    "layer_groups",
    "layerwise_barriers",
    "merge_models",
    "resolve_alphas",
    "singular_vector_alignment",
    "solve_assignment",
    "spawn",
    "ste_matching",
    "train_steps",
    "weight_matching",
]
