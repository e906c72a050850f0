"""The science: pure functions on a model (architecture only), parameter dicts and tensors.

One subpackage per domain, mirrored by ``engine.jobs.builtin_probes``, ``engine.figures`` and
``pages.ui``: :mod:`~engine.probes.core` (functional evaluation, chunking, plane/path
evaluation, Lanczos, BatchNorm reset), :mod:`~engine.probes.landscape`,
:mod:`~engine.probes.connectivity`, :mod:`~engine.probes.representations`,
:mod:`~engine.probes.rashomon` and :mod:`~engine.probes.phases`. Each lists its public names
in ``__all__``; this package re-exports them for notebooks (``from engine.probes import
linear_cka``), except the evaluation plumbing that stays in :mod:`engine.probes.core`.
"""

from engine.probes import connectivity, core, landscape, phases, rashomon, representations

from engine.probes.connectivity import (
    ALIGN_METHODS, BARRIER_DEFINITIONS, Alignment, Barrier, BarrierMatrix, FeatureSite,
    FunctionNotPreservedError, Instability, InterpolationCurve, LayerwiseBarriers, MergeResult,
    PathComparison, SingularAlignment, TrainState, WarmAssignments, activation_matching, align_models,
    apply_alignment, apply_alignment_checked, average_states, barrier, barrier_matrix,
    check_function_preserved, compare_paths, diagonal_fisher, feature_sites, find_basins, fisher_merge,
    instability_analysis, interpolate, layer_groups, layerwise_barriers, merge_models, resolve_alphas,
    singular_vector_alignment, solve_assignment, spawn, ste_matching, train_steps, weight_matching,
)
from engine.probes.core import (
    BNMode, LanczosResult, LossFn, ParamLayout, Strategy, bn_reset_batches, default_loss, evaluate_plane,
    evaluate_points, fast_default_loss, flatten_params, functional_module, has_batchnorm, lanczos,
    reset_bn_stats, resolve_data, ritz, shallow_copy, split_state, unflatten_params,
)
from engine.probes.landscape import (
    Direction, FunctionalDimension, FunctionalDimensionCurve, HessianEigs, HessianOperator, IntrinsicDimension,
    PCADirections, Plane, Sharpness, SpectralDensity, Surface, TraceEstimate, direction_between,
    functional_dimension, functional_dimension_over_training, hessian_directions, hessian_operator,
    hessian_spectral_density, hessian_top_eigs, hessian_trace, intrinsic_dimension, loss_surface_1d,
    loss_surface_2d, parameter_jacobian, pca_directions, plane_through, random_direction, scaling_symmetries,
    sharpness_over_training, subspace_projection,
)
from engine.probes.phases import (
    PHASE_METRICS, GrokkingSteps, PhaseThresholds, axis_values, cell_table, classify_phases,
    default_thresholds, grokking_steps, yang_phase,
)
from engine.probes.rashomon import (
    ImportanceCloud, InteractionCloud, MultiplicityCurve, PredictiveMultiplicity, RashomonCurve,
    RashomonRatio, RashomonSample, RashomonSet, TreeRashomonSet, feature_interaction_cloud, flat_losses,
    member_probabilities, most_contested, multiplicity_curve, pattern_rashomon_ratio, permutation_indices,
    predict_trees, predictive_multiplicity, rashomon_curve, rashomon_ratio, rashomon_ratio_from_losses,
    rashomon_set, rashomon_threshold, rashomon_trees, ridge_rashomon_ratio, sample_rashomon_set,
    stacked_forward, tree_rules, tree_to_dict, variable_importance_cloud,
)
from engine.probes.representations import (
    ACTIVATION_TYPES, METRICS, OUTPUT, Activations, AlignedProjection, LayerDimensions, NeuralCollapse,
    NeuronMatching, Projection, SimilarityGrid, aligned_projection, canonical_correlations,
    capture_activations, capture_over_checkpoints, debiased_cka, default_layers, effective_rank,
    hsic_unbiased, layer_dimensions, linear_cka, minibatch_cka, neural_collapse,
    neural_collapse_over_training, neuron_matching, participation_ratio, procrustes_distance, project, pwcca,
    rbf_cka, rdm, resolve_pool, rsa, similarity_grid, similarity_over_training, stratified_indices,
    subsample_indices, svcca, twonn_dimension, warm_umap,
)

__all__ = [
    "ACTIVATION_TYPES", "ALIGN_METHODS", "BARRIER_DEFINITIONS", "METRICS", "OUTPUT", "PHASE_METRICS",
    "Activations", "AlignedProjection", "Alignment", "BNMode", "Barrier", "BarrierMatrix", "Direction",
    "FeatureSite", "FunctionNotPreservedError", "GrokkingSteps", "HessianEigs", "HessianOperator",
    "ImportanceCloud", "Instability", "InteractionCloud", "InterpolationCurve", "IntrinsicDimension",
    "LanczosResult", "LayerDimensions", "LayerwiseBarriers", "LossFn", "MergeResult", "MultiplicityCurve",
    "NeuralCollapse", "NeuronMatching", "PCADirections", "ParamLayout", "PathComparison", "PhaseThresholds",
    "Plane", "PredictiveMultiplicity", "Projection", "RashomonCurve", "RashomonRatio", "RashomonSample",
    "RashomonSet", "Sharpness", "SimilarityGrid", "SingularAlignment", "SpectralDensity", "Strategy",
    "Surface", "TraceEstimate", "TrainState", "TreeRashomonSet", "WarmAssignments", "activation_matching",
    "align_models", "aligned_projection", "apply_alignment", "apply_alignment_checked", "average_states",
    "axis_values", "barrier", "barrier_matrix", "bn_reset_batches", "canonical_correlations",
    "capture_activations", "capture_over_checkpoints", "cell_table", "check_function_preserved",
    "classify_phases", "compare_paths", "connectivity", "core", "debiased_cka", "default_layers",
    "default_loss", "default_thresholds", "diagonal_fisher", "direction_between", "effective_rank",
    "evaluate_plane", "evaluate_points", "fast_default_loss", "feature_interaction_cloud", "feature_sites",
    "find_basins", "fisher_merge", "flat_losses", "flatten_params", "functional_module", "grokking_steps",
    "has_batchnorm", "hessian_directions", "hessian_operator", "hessian_spectral_density", "hessian_top_eigs",
    "hessian_trace", "hsic_unbiased", "instability_analysis", "interpolate", "intrinsic_dimension", "lanczos",
    "landscape", "layer_dimensions", "layer_groups", "layerwise_barriers", "linear_cka", "loss_surface_1d",
    "loss_surface_2d", "member_probabilities", "merge_models", "minibatch_cka", "most_contested",
    "multiplicity_curve", "neural_collapse", "neural_collapse_over_training", "neuron_matching",
    "participation_ratio", "pattern_rashomon_ratio", "pca_directions", "permutation_indices", "phases",
    "plane_through", "predict_trees", "predictive_multiplicity", "procrustes_distance", "project", "pwcca",
    "random_direction", "rashomon", "rashomon_curve", "rashomon_ratio", "rashomon_ratio_from_losses",
    "rashomon_set", "rashomon_threshold", "rashomon_trees", "rbf_cka", "rdm", "representations",
    "reset_bn_stats", "resolve_alphas", "resolve_data", "resolve_pool", "ridge_rashomon_ratio", "ritz", "rsa",
    "sample_rashomon_set", "shallow_copy", "sharpness_over_training", "similarity_grid",
    "similarity_over_training", "singular_vector_alignment", "solve_assignment", "spawn", "split_state",
    "stacked_forward", "ste_matching", "stratified_indices", "subsample_indices", "subspace_projection",
    "svcca", "train_steps", "tree_rules", "tree_to_dict", "twonn_dimension", "unflatten_params",
    "variable_importance_cloud", "warm_umap", "weight_matching", "yang_phase",
    # landscape: functional dimension (issue 18)
    "FunctionalDimension", "FunctionalDimensionCurve", "functional_dimension", "functional_dimension_over_training",
    "parameter_jacobian", "scaling_symmetries",
]
