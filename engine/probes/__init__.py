"""The science: pure functions on a model (architecture only), parameter dicts and tensors.

Each module holds one area (``similarity`` holds similarity and nothing else); this package
re-exports their public names, as ``torch.func`` does over its private modules.
"""

from importlib import import_module as _import_module

from .activations import *  # noqa: F401,F403
from .align import *  # noqa: F401,F403
from .align_features import *  # noqa: F401,F403
from .align_ste import *  # noqa: F401,F403
from .barrier_matrix import *  # noqa: F401,F403
from .bn_reset import *  # noqa: F401,F403
from .connectivity import *  # noqa: F401,F403
from .curvature import *  # noqa: F401,F403
from .directions import *  # noqa: F401,F403
from .functional import *  # noqa: F401,F403
from .geometry import *  # noqa: F401,F403
from .importance import *  # noqa: F401,F403
from .lanczos import *  # noqa: F401,F403
from .landscape import *  # noqa: F401,F403
from .layerwise import *  # noqa: F401,F403
from .lmc import *  # noqa: F401,F403
from .merge import *  # noqa: F401,F403
from .multiplicity import *  # noqa: F401,F403
from .path_eval import *  # noqa: F401,F403
from .phases import *  # noqa: F401,F403
from .plane_eval import *  # noqa: F401,F403
from .projection import *  # noqa: F401,F403
from .rashomon import *  # noqa: F401,F403
from .rashomon_sampling import *  # noqa: F401,F403
from .similarity import *  # noqa: F401,F403
from .similarity_grid import *  # noqa: F401,F403
from .singular_alignment import *  # noqa: F401,F403
from .spawning import *  # noqa: F401,F403
from .spectrum import *  # noqa: F401,F403
from .subspace import *  # noqa: F401,F403
from .trace import *  # noqa: F401,F403
from .trees import *  # noqa: F401,F403

__all__ = [name for _m in ("activations", "align", "align_features", "align_ste", "barrier_matrix", "bn_reset", "connectivity", "curvature", "directions", "functional", "geometry", "importance", "lanczos", "landscape", "layerwise", "lmc", "merge", "multiplicity", "path_eval", "phases", "plane_eval", "projection", "rashomon", "rashomon_sampling", "similarity", "similarity_grid", "singular_alignment", "spawning", "spectrum", "subspace", "trace", "trees")
           for name in _import_module(f"{__name__}.{_m}").__all__]
