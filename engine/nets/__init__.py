"""Architectures with width/depth knobs, and the permutation symmetries they declare.

>>> from engine.config import ArchSpec
>>> from engine.nets import build, permutation_spec, random_permutation, apply_permutation
>>> model = build(ArchSpec(name="mlp", width=32, depth=2), (1, 40), 10, seed=0)
>>> pspec = permutation_spec(model)
>>> state = model.state_dict()
>>> permuted = apply_permutation(pspec, random_permutation(pspec, state, seed=1), state)

Architectures that declare no spec (user factories, Hugging Face models) get one
inferred from their traced graph, checked by the function-preservation self-check:
``infer_perm_spec(model, example_input)``; :func:`permutation_spec` does it for models
made by :func:`build`.

Every model runs under ``torch.func.functional_call`` + ``vmap`` over parameters and
buffers stacked with ``torch.func.stack_module_state``, in train and eval mode;
BatchNorm running statistics stacked as buffers are updated in place under ``vmap``.
"""

from engine.nets.factory import IMPORT_RUN_COMMAND, FactoryError, check_factory, load_factory
from engine.nets.factory_check import (
    FACTORY_CHECK_MEMORY_BYTES,
    FACTORY_CHECK_TIMEOUT_S,
    check_factory_bounded,
    factory_checks_reused,
)
from engine.nets.infer import PermutationSpecError, check_perm_spec, infer_perm_spec
from engine.nets.options import Option, resolve_options
from engine.nets.permutation import BlockPerm, PermutationSpec, apply_permutation, random_permutation
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
    "FACTORY_CHECK_MEMORY_BYTES",
    "FACTORY_CHECK_TIMEOUT_S",
    "IMPORT_RUN_COMMAND",
    "BlockPerm",
    "Factory",
    "FactoryError",
    "Option",
    "PermSpecFn",
    "PermutationSpec",
    "PermutationSpecError",
    "PluginConfig",
    "apply_permutation",
    "available",
    "build",
    "check_architecture_name",
    "check_factory",
    "check_factory_bounded",
    "check_perm_spec",
    "describe_built_by",
    "factory_checks_reused",
    "infer_perm_spec",
    "load_factory",
    "permutation_spec",
    "plugin_config",
    "provenance",
    "random_permutation",
    "register",
    "resolve_options",
    "use_plugins",
]
