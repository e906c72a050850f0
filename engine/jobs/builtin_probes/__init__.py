"""Built-in probe kinds; importing this package registers them.

One module per domain, named as in ``engine.probes``: ``core`` (``evaluate``), ``landscape``
(``landscape.*`` and ``curvature.*``), ``connectivity``, ``representations``, ``rashomon`` (and
``rashomon_rid``, the importance distribution),
``phases`` (``sweep.cell``, ``weights.norm``) and ``zoo`` (``zoo.distance``, ``zoo.umap``). Probe kind
strings are stored with every result, so they never change when a module is renamed.
"""

from . import (  # noqa: F401  (each registers its probe kinds)
    connectivity,
    core,
    functional_dimension,
    landscape,
    phases,
    rashomon,
    rashomon_rid,
    representations,
    zoo,
)
