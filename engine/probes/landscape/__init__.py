"""Loss landscapes: surfaces along directions, curvature (Hessian eigenvalues, spectral
density, trace, sharpness), the intrinsic dimension of the objective and the functional
dimension of the parameter-to-function map (hidden symmetries)."""

from .curvature import (
    HessianEigs,
    HessianOperator,
    ProductProgress,
    Sharpness,
    hessian_operator,
    hessian_top_eigs,
    hvp_rows,
    sharpness_over_training,
)
from .directions import (
    Direction,
    PCADirections,
    Plane,
    direction_between,
    hessian_directions,
    pca_directions,
    plane_through,
    random_direction,
)
from .functional_dimension import (
    FunctionalDimension,
    FunctionalDimensionCurve,
    functional_dimension,
    functional_dimension_over_training,
    parameter_jacobian,
    scaling_symmetries,
)
from .per_layer import (
    BLOCK_LEVELS,
    PerLayerHessian,
    parameter_blocks,
    per_layer_hessian,
    per_layer_hessian_over_training,
)
from .spectrum import SpectralDensity, hessian_spectral_density
from .subspace import IntrinsicDimension, intrinsic_dimension, subspace_projection
from .surface import Surface, loss_surface_1d, loss_surface_2d
from .topology import SurfacePersistence, gudhi_diagram, surface_persistence
from .trace import TraceEstimate, hessian_trace
from .trajectory_plane import TrajectoryPlane, trajectory_plane

__all__ = [
    "BLOCK_LEVELS",
    "PerLayerHessian",
    "parameter_blocks",
    "per_layer_hessian",
    "per_layer_hessian_over_training",
    "Direction",
    "FunctionalDimension",
    "FunctionalDimensionCurve",
    "HessianEigs",
    "HessianOperator",
    "IntrinsicDimension",
    "PCADirections",
    "Plane",
    "ProductProgress",
    "Sharpness",
    "SpectralDensity",
    "Surface",
    "SurfacePersistence",
    "TraceEstimate",
    "TrajectoryPlane",
    "direction_between",
    "functional_dimension",
    "gudhi_diagram",
    "functional_dimension_over_training",
    "hessian_directions",
    "hessian_operator",
    "hessian_spectral_density",
    "hessian_top_eigs",
    "hessian_trace",
    "hvp_rows",
    "intrinsic_dimension",
    "loss_surface_1d",
    "loss_surface_2d",
    "parameter_jacobian",
    "pca_directions",
    "plane_through",
    "random_direction",
    "scaling_symmetries",
    "sharpness_over_training",
    "subspace_projection",
    "surface_persistence",
    "trajectory_plane",
]
