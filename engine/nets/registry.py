"""The architecture registry: build a network from an ``ArchSpec``, look up its symmetries.

Built in: ``mlp``, ``cnn1d``, ``cnn2d``, ``resnet``, ``transformer``. Users add their
own ``nn.Module`` factories with :func:`register`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from engine.config import ArchSpec
from engine.nets.cnn import build_cnn1d, build_cnn2d, cnn_permutation_spec
from engine.nets.factory import build_from_factory
from engine.nets.inputs import check_build_args
from engine.nets.mlp import build_mlp, mlp_permutation_spec
from engine.nets.permutation import PermutationSpec
from engine.nets.resnet import build_resnet, resnet_permutation_spec
from engine.nets.transformer import build_transformer, transformer_permutation_spec
from engine.registry import Registry, describe

__all__ = ["Factory", "PermSpecFn", "available", "build", "check_architecture_name", "permutation_spec", "register"]

Factory = Callable[[ArchSpec, tuple[int, ...], int, int | None], nn.Module]
PermSpecFn = Callable[[nn.Module], PermutationSpec]

# build() records the architecture name on the model under this attribute, so that
# permutation_spec(model) can find the right entry (it survives deepcopy and .to()).
_ARCH_ATTR = "_zooscope_arch"
_FACTORY_ATTR = "_zooscope_factory"  # the import path of a factory's model (None for the built-ins)
_NORM_TYPES = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


@dataclass(frozen=True)
class _Entry:
    factory: Factory
    perm_spec: PermSpecFn | None


ARCHITECTURES: Registry[_Entry] = Registry(
    "architecture", hint="Register your own with engine.nets.register(name, factory).",
    label=lambda entry: describe(entry.factory),
)
for _name, _factory, _perm_spec in [
    ("mlp", build_mlp, mlp_permutation_spec),
    ("cnn1d", build_cnn1d, cnn_permutation_spec),
    ("cnn2d", build_cnn2d, cnn_permutation_spec),
    ("resnet", build_resnet, resnet_permutation_spec),
    ("transformer", build_transformer, transformer_permutation_spec),
]:
    ARCHITECTURES.register(_name, _Entry(_factory, _perm_spec))


def available() -> list[str]:
    """Names of every registered architecture, sorted."""
    return ARCHITECTURES.names()


def check_architecture_name(name: str) -> str:
    """``name`` when it is a registered architecture, else a ValueError listing the registered ones.

    The one check of architecture names: :func:`build` and :func:`engine.train.check_registered`
    (specs before they are queued) use it.
    """
    return ARCHITECTURES.check(name)


def register(name: str, factory: Factory, perm_spec: PermSpecFn | None = None) -> None:
    """Add a user architecture, usable as ``ArchSpec(name=name, ...)``.

    Parameters
    ----------
    name : str
        A name not taken by another architecture (the built-ins included); registering
        the same factory and perm_spec again changes nothing, a different one raises.
    factory : callable
        ``factory(spec, input_shape, n_outputs, vocab_size) -> nn.Module``, returning a
        model whose outputs are ``(B, n_outputs)``. It draws its initial weights from
        the global RNG, which :func:`build` seeds inside a fork; ``spec.options`` are
        passed as given (the factory validates them); ``spec.init_scale`` is applied
        by :func:`build`, not by the factory. Registration lives in this process only.
    perm_spec : callable, optional
        ``perm_spec(model) -> PermutationSpec``. Without it, permutation alignment is
        unavailable for this architecture and :func:`permutation_spec` says so.
    """
    if not callable(factory):
        raise TypeError(
            f"factory must be callable as factory(spec, input_shape, n_outputs, vocab_size); got {factory!r}"
        )
    if perm_spec is not None and not callable(perm_spec):
        raise TypeError(f"perm_spec must be a callable model -> PermutationSpec, or None; got {perm_spec!r}")
    ARCHITECTURES.register(name, _Entry(factory, perm_spec))


def build(spec: ArchSpec, input_shape: tuple[int, ...], n_outputs: int, *,
          vocab_size: int | None = None, seed: int = 0) -> nn.Module:
    """A freshly initialised network for ``spec``.

    Parameters
    ----------
    spec : ArchSpec
        Architecture name, ``width``, ``depth``, ``init_scale`` and ``options``; or a
        ``factory`` import path with ``kwargs`` and ``output`` (:mod:`engine.nets.factory`),
        whose name is then a label only.
    input_shape : tuple of int
        One sample's shape, without the batch axis: ``(D,)``, ``(C, L)``, ``(C, H, W)``
        or ``(T,)`` for tokens.
    n_outputs : int
        Classes (logits) or regression targets; the model returns ``(B, n_outputs)``.
    vocab_size : int, optional
        Set for token inputs (int64 in ``[0, vocab_size)``).
    seed : int, default 0
        Same seed -> same weights. The caller's global RNG state is left untouched.

    Returns
    -------
    nn.Module
        In training mode. Parameters of all layers except normalisation layers are
        multiplied by ``spec.init_scale`` after the default initialisation.

    Raises
    ------
    ValueError
        Unknown architecture or option, or an input shape the architecture cannot take;
        for a factory, :class:`engine.nets.factory.FactoryError` (a ValueError) naming the
        spec and the cause, including logits of the wrong shape for the data.
    """
    if not isinstance(spec, ArchSpec):
        raise TypeError(f"build needs an engine.config.ArchSpec; got {type(spec).__name__}")
    make = (build_from_factory if spec.factory is not None else ARCHITECTURES.get(spec.name).factory)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer; got {seed!r}")
    shape = check_build_args(input_shape, n_outputs, vocab_size)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = make(spec, shape, n_outputs, vocab_size)
    if not isinstance(model, nn.Module):
        raise TypeError(f"the factory of architecture {spec.name!r} returned {type(model).__name__}, not an nn.Module")
    _scale_initial_weights(model, spec.init_scale)
    # A factory's model is known by its import path; its name is a label that may equal a built-in's.
    setattr(model, _ARCH_ATTR, spec.name if spec.factory is None else None)
    setattr(model, _FACTORY_ATTR, spec.factory)
    return model


def permutation_spec(model: nn.Module) -> PermutationSpec:
    """The permutation symmetries of a model made by :func:`build`.

    Raises
    ------
    ValueError
        If the model was not made by :func:`build`, its architecture was registered
        without ``perm_spec``, or the spec names tensors the model does not have.
    """
    name = getattr(model, _ARCH_ATTR, None)
    if name is None:
        raise ValueError(
            f"permutation_spec needs a model made by engine.nets.build (which records its architecture); "
            f"got a {type(model).__name__} that was not"
        )
    if name not in ARCHITECTURES:
        raise ValueError(f"architecture {name!r} is no longer registered in this process; register it again")
    entry = ARCHITECTURES.get(name)
    if entry.perm_spec is None:
        raise ValueError(
            f"architecture {name!r} was registered without perm_spec, so permutation alignment is "
            f"unavailable for it; pass perm_spec=<callable model -> PermutationSpec> to engine.nets.register"
        )
    pspec = entry.perm_spec(model)
    _check_against_model(name, pspec, model)
    return pspec


def _check_against_model(name: str, pspec: PermutationSpec, model: nn.Module) -> None:
    state = model.state_dict(keep_vars=True)
    for key, axes in pspec.axes_to_perm.items():
        if key not in state:
            raise ValueError(
                f"the permutation spec of architecture {name!r} lists {key!r}, which the model does not have; "
                f"its state_dict keys are {sorted(state)}"
            )
        if len(axes) != state[key].ndim:
            raise ValueError(
                f"the permutation spec of architecture {name!r} gives {len(axes)} axes for {key!r}, "
                f"which has shape {tuple(state[key].shape)}"
            )
    pspec.perm_sizes(state)  # raises if a perm spans axes of different lengths


@torch.no_grad()
def _scale_initial_weights(model: nn.Module, scale: float) -> None:
    if scale == 1.0:
        return
    for module in model.modules():
        if isinstance(module, _NORM_TYPES):
            continue  # a norm layer's gain/shift are not "weights" of the init scale
        for param in module.parameters(recurse=False):
            param.mul_(scale)
