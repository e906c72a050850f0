"""Rashomon figures: a set of networks (:mod:`.sets`: losses, size, multiplicity, importance,
interactions), a set of sparse trees (:mod:`.trees`) and the Rashomon importance distribution
(:mod:`.rid`)."""

from .rid import rid_figure
from .sets import (
    contested_samples_table,
    disagreement_histogram,
    fis_halo_figure,
    fis_swarm_figure,
    importance_cloud_figure,
    importance_pair_figure,
    multiplicity_curve_figure,
    rashomon_epsilon_slider,
    rashomon_scatter,
    rashomon_size_curve,
)
from .trees import filter_trees, tree_diagram, tree_feature_usage, tree_list_table, tree_set_scatter, tree_sunburst

__all__ = [
    "contested_samples_table",
    "disagreement_histogram",
    "filter_trees",
    "fis_halo_figure",
    "fis_swarm_figure",
    "importance_cloud_figure",
    "importance_pair_figure",
    "multiplicity_curve_figure",
    "rashomon_epsilon_slider",
    "rashomon_scatter",
    "rashomon_size_curve",
    "rid_figure",
    "tree_diagram",
    "tree_feature_usage",
    "tree_list_table",
    "tree_set_scatter",
    "tree_sunburst",
]
