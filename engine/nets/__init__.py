"""Architectures with width/depth knobs, and the permutation symmetries they declare.

>>> from engine.config import ArchSpec
>>> from engine.nets import build, permutation_spec, random_permutation, apply_permutation
>>> model = build(ArchSpec(name="mlp", width=32, depth=2), (1, 40), 10, seed=0)
>>> pspec = permutation_spec(model)
>>> state = model.state_dict()
>>> permuted = apply_permutation(pspec, random_permutation(pspec, state, seed=1), state)

Every model runs under ``torch.func.functional_call`` + ``vmap`` over parameters and
buffers stacked with ``torch.func.stack_module_state``, in train and eval mode;
BatchNorm running statistics stacked as buffers are updated in place under ``vmap``.
"""

from engine.nets.factory import IMPORT_RUN_COMMAND, FactoryError, check_factory, load_factory
from engine.nets.options import Option, resolve_options
from engine.nets.permutation import PermutationSpec, apply_permutation, random_permutation
from engine.nets.plugins import PluginConfig, plugin_config, use_plugins
from engine.nets.provenance import describe_built_by, provenance
from engine.nets.registry import (
    Factory,
    PermSpecFn,
    available,
    build,
    check_architecture_name,
    permutation_spec,
    register,
)

__all__ = [
    "IMPORT_RUN_COMMAND",
    "Factory",
    "FactoryError",
    "Option",
    "PermSpecFn",
    "PermutationSpec",
    "PluginConfig",
    "apply_permutation",
    "available",
    "build",
    "check_architecture_name",
    "check_factory",
    "describe_built_by",
    "load_factory",
    "plugin_config",
    "provenance",
    "permutation_spec",
    "random_permutation",
    "register",
    "resolve_options",
    "use_plugins",
]
