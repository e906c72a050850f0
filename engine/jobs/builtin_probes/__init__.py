"""Built-in probe kinds; importing this package registers them.

One module per domain, named as in ``engine.probes``: ``core`` (``evaluate``), ``landscape``
(``landscape.*`` and ``curvature.*``), ``connectivity``, ``representations``, ``rashomon`` and
``phases`` (``sweep.cell``, ``weights.norm``). Probe kind strings are stored with every result,
so they never change when a module is renamed.
"""

from . import connectivity, core, functional_dimension, landscape, phases, rashomon, representations  # noqa: F401
