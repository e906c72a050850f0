"""Built-in probe kinds; importing this package registers them (one module per area)."""

from . import evaluation  # noqa: F401
