"""Built-in probe kinds; importing this package registers them (one module per area)."""

from . import evaluation, landscape  # noqa: F401
