"""Plotly figures, one module (or package) per domain, named as in ``engine.probes``.

The same figure appears in the dashboard and in reports.
"""

from importlib import import_module as _import_module

from .connectivity import *  # noqa: F401,F403
from .export import *  # noqa: F401,F403
from .functional_dimension import *  # noqa: F401,F403
from .landscape import *  # noqa: F401,F403
from .landscape_topology import *  # noqa: F401,F403
from .phases import *  # noqa: F401,F403
from .rashomon import *  # noqa: F401,F403
from .representations import *  # noqa: F401,F403
from .style import *  # noqa: F401,F403
from .zoo import *  # noqa: F401,F403
from .zoo_map import *  # noqa: F401,F403

__all__ = [name for _m in ("connectivity", "export", "functional_dimension", "landscape", "landscape_topology",
                          "phases", "rashomon", "representations", "style", "zoo", "zoo_map")
           for name in _import_module(f"{__name__}.{_m}").__all__]
