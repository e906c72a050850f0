"""Rashomon sets: the almost-equally-good models, their size, sampling, predictive
multiplicity, variable importance / feature interaction across them, sparse trees, and the
Rashomon importance distribution (RID) over bootstrap resamples."""

from .importance import (
    ImportanceCloud,
    InteractionCloud,
    feature_interaction_cloud,
    permutation_indices,
    stacked_forward,
    variable_importance_cloud,
)
from .model_class import fit_optimum, model_class
from .multiplicity import (
    MultiplicityCurve,
    PredictiveMultiplicity,
    member_probabilities,
    most_contested,
    multiplicity_curve,
    predictive_multiplicity,
)
from .population import ModelGroup, ModelScores, explanation_clouds, model_scores
from .rid import (
    BootstrapSet,
    ImportanceDistribution,
    bootstrap_indices,
    importance_distribution,
    rashomon_importance_distribution,
)
from .rid_sets import (
    PopulationSets,
    SampledSets,
    TreeSets,
    quantile_thresholds,
    tree_model_reliance,
)
from .sampling import RashomonSample, flat_losses, rashomon_ratio, sample_rashomon_set
from .sets import (
    RashomonCurve,
    RashomonRatio,
    RashomonSet,
    pattern_rashomon_ratio,
    rashomon_curve,
    rashomon_ratio_from_losses,
    rashomon_set,
    rashomon_threshold,
    ridge_rashomon_ratio,
)
from .trees import TreeRashomonSet, predict_trees, rashomon_trees, tree_rules, tree_to_dict

__all__ = [
    "BootstrapSet",
    "ImportanceDistribution",
    "PopulationSets",
    "SampledSets",
    "TreeSets",
    "bootstrap_indices",
    "importance_distribution",
    "quantile_thresholds",
    "rashomon_importance_distribution",
    "tree_model_reliance",
    "ImportanceCloud",
    "InteractionCloud",
    "ModelGroup",
    "ModelScores",
    "MultiplicityCurve",
    "PredictiveMultiplicity",
    "RashomonCurve",
    "RashomonRatio",
    "RashomonSample",
    "RashomonSet",
    "TreeRashomonSet",
    "explanation_clouds",
    "feature_interaction_cloud",
    "fit_optimum",
    "flat_losses",
    "member_probabilities",
    "model_class",
    "model_scores",
    "most_contested",
    "multiplicity_curve",
    "pattern_rashomon_ratio",
    "permutation_indices",
    "predict_trees",
    "predictive_multiplicity",
    "rashomon_curve",
    "rashomon_ratio",
    "rashomon_ratio_from_losses",
    "rashomon_set",
    "rashomon_threshold",
    "rashomon_trees",
    "ridge_rashomon_ratio",
    "sample_rashomon_set",
    "stacked_forward",
    "tree_rules",
    "tree_to_dict",
    "variable_importance_cloud",
]
