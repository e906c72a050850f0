"""Built-in probe kinds; importing this package registers them (one module per area)."""

from . import connectivity, evaluation, landscape, rashomon, representations, sweep  # noqa: F401
