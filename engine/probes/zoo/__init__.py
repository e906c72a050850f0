"""The zoo as a whole: distances between every pair of models (weights after alignment, barriers,
representations, predictions), maps of them (MDS, UMAP), and clusters / basins by linkage.

This domain composes the others (connectivity's alignment and barriers, representations' CKA):
no other probe domain imports it."""

from .clusters import LINKAGES, ZooClusters, cluster_models
from .distances import (
    WEIGHT_SPACE,
    ZOO_METRICS,
    ModelView,
    ZooDistances,
    metric_label,
    model_view,
    pair_distances,
    pairwise_distances,
)
from .embedding import EMBED_METHODS, ModelEmbedding, classical_mds, embed_models
from .shape import shape_metric

__all__ = [
    "EMBED_METHODS",
    "LINKAGES",
    "WEIGHT_SPACE",
    "ZOO_METRICS",
    "ModelEmbedding",
    "ModelView",
    "ZooClusters",
    "ZooDistances",
    "classical_mds",
    "cluster_models",
    "embed_models",
    "metric_label",
    "model_view",
    "pair_distances",
    "pairwise_distances",
    "shape_metric",
]
