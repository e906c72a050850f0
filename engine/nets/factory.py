"""Architectures from the user's code: ``ArchSpec.factory = "module:callable"`` called with ``kwargs``.

>>> from engine.config import ArchSpec
>>> spec = ArchSpec(factory="transformers:ResNetForImageClassification", output="logits",
...                 kwargs={"config": {"num_channels": 1, "num_labels": 10, "hidden_sizes": [8, 16],
...                                    "depths": [1, 1], "embedding_size": 8}})
>>> model = engine.nets.build(spec, (1, 8, 8), 10, seed=0)   # forward returns (B, 10) logits

Three routes, one rule (``factory(**kwargs)`` returns an ``nn.Module``):

* a function or class of the user's own module in a plugin folder (``my_models:WideNet``);
* ``torchvision.models:resnet18`` with ``kwargs = {num_classes = 10}`` where torchvision imports;
* a Hugging Face model class with ``kwargs = {config = {...}}``: the dict becomes the class's
  ``config_class`` (unknown keys refused, since transformers would keep a typo silently) and the
  model is ``Model(config)``.

Where the code may come from is :mod:`engine.nets.plugins`. No route downloads weights:
``pretrained=True``, ``weights="DEFAULT"`` or ``from_pretrained`` are refused with the command
that imports a local file instead. The model's input is passed as the first positional argument
(``pixel_values`` / ``input_ids`` of the transformers models); ``ArchSpec.output`` picks the
logits out of what ``forward`` returns (:func:`adapt_output`).
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import threading
import typing
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from engine.bounds import MAX_MODEL_MODULES, MAX_MODEL_PARAMETERS, short_repr
from engine.config import ArchSpec

from .plugins import FactoryError, module_source

__all__ = [
    "IMPORT_RUN_COMMAND",
    "FactoryError",
    "adapt_output",
    "build_from_factory",
    "check_factory",
    "check_factory_source",
    "check_output_shape",
    "load_factory",
    "select_output",
]

IMPORT_RUN_COMMAND = "zooscope import-run DIR --factory module:callable"
MAX_FACTORY_LENGTH = 200  # "package.module:callable", as ArchSpec bounds it
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
_FACTORY = re.compile(rf"^{_DOTTED}:{_DOTTED}$")  # a module name and an attribute path: never a file path
# Keyword arguments that fetch weights in torchvision, timm and transformers.
_WEIGHT_KWARGS = ("pretrained", "weights", "weights_backbone", "pretrained_backbone", "pretrained_model_name_or_path",
                  "pretrained_cfg", "pretrained_cfg_overlay")
_WEIGHT_ATTRS = ("from_pretrained", "load_state_dict_from_url", "load_from_hub")


def _parts(factory: str) -> tuple[str, list[str]]:
    if not isinstance(factory, str) or len(factory) > MAX_FACTORY_LENGTH or not _FACTORY.fullmatch(factory):
        raise FactoryError(f"factory must be an import path 'package.module:callable' of at most {MAX_FACTORY_LENGTH} "
                           f"characters (dotted Python names: no file paths, no '..'); got {short_repr(factory)}")
    module_name, attr = factory.split(":")
    attrs = attr.split(".")
    if any(a.startswith("__") for a in attrs):
        raise FactoryError(f"factory {factory!r}: a factory is a public function or class; "
                           f"dunder attributes ({attr!r}) are not allowed")
    return module_name, attrs


def _refuse_pretrained(factory: str, attrs: list[str], kwargs: Mapping[str, Any]) -> None:
    asked = [f"'.{a}'" for a in attrs if a in _WEIGHT_ATTRS]
    asked += [f"{k}={short_repr(kwargs[k], 40)}" for k in _WEIGHT_KWARGS
              if k in kwargs and kwargs[k] not in (None, False, "", {})]
    if asked:
        drop = asked[0].split("=")[0].strip("'")
        raise FactoryError(
            f"factory {factory!r} asks for pretrained weights ({', '.join(asked)}); Zooscope never downloads weights. "
            f"Build the architecture without them (drop {drop}) and import a local weights file "
            f"as a run: `{IMPORT_RUN_COMMAND}`")


def check_factory_source(factory: str, kwargs: Mapping[str, Any] | None = None) -> str:
    """Check ``factory``'s form, that it asks for no pretrained weights, and that its module may be
    imported, without running any of the user's code; return ``"plugin"`` or ``"installed"``.

    Raises
    ------
    FactoryError
        As :func:`load_factory`, for everything that is decided before the module is imported.
    """
    module_name, attrs = _parts(factory)
    _refuse_pretrained(factory, attrs, kwargs or {})
    source, _ = module_source(module_name, factory)
    return source


def load_factory(factory: str, kwargs: Mapping[str, Any] | None = None) -> Callable[..., Any]:
    """The callable ``factory`` names, imported only from an allowed place (:mod:`engine.nets.plugins`).

    Raises
    ------
    FactoryError
        A malformed path, a request for pretrained weights, a module that is not allowed, missing
        or fails to import, a missing attribute, or an object that is not callable or that comes
        from another module (``my_models:os.system`` is refused).
    """
    source = check_factory_source(factory, kwargs)
    module_name, attrs = _parts(factory)
    # Belt and braces for "no code path downloads weights": the Hugging Face hub reads this when it is
    # first imported, which in a worker is here. An owner who wants the hub online sets it to 0.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:  # user code: any error it raises on import is the user's to read
        hint = ""
        if "torchvision" in module_name or "torchvision::" in str(exc):
            hint = (f" (torchvision's compiled operators must match the installed torch {torch.__version__}; install "
                    "the torchvision built for it, or use factory = \"transformers:ResNetForImageClassification\")")
        raise FactoryError(f"factory {factory!r}: importing module {module_name!r} failed: "
                           f"{type(exc).__name__}: {str(exc)[:300]}{hint}") from None
    top = module_name.split(".")[0]
    for i, name in enumerate(attrs):
        if not hasattr(obj, name):
            where = ".".join([module_name, *attrs[:i]])
            public = sorted(n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None)))
            raise FactoryError(f"factory {factory!r}: {where!r} has no attribute {name!r}; "
                               f"callables there include {short_repr(public, 200)}")
        obj = getattr(obj, name)
    if not callable(obj):
        raise FactoryError(f"factory {factory!r} names a {type(obj).__name__}, not a function or class")
    home = getattr(obj, "__module__", None) or ""
    if home.split(".")[0] != top:
        raise FactoryError(f"factory {factory!r} resolves to an object defined in {home or 'an unknown module'!r}, "
                           f"not in {top!r}; name the function or class where it is defined "
                           "(the same rules then decide whether that module may be imported)")
    if source == "installed":
        _check_installed_callable(factory, obj, top)
    return obj


def _returns_module(fn: Callable[..., Any]) -> bool:
    """Whether ``fn``'s return annotation is an ``nn.Module`` subclass (``resnet18(...) -> ResNet``)."""
    try:
        ret = typing.get_type_hints(fn).get("return")
    except Exception:  # an annotation that does not resolve declares nothing usable
        return False
    return inspect.isclass(ret) and issubclass(ret, nn.Module)


def _check_installed_callable(factory: str, obj: Any, top: str) -> None:
    """An installed package's factory must be a model class or a function declared to return one.

    An allowed package holds far more than models (``transformers.testing_utils`` runs shell
    commands), and a callable cannot be asked what it returns without calling it. The owner's
    plugin folders are trusted as a whole; an installed package only for its models.
    """
    if inspect.isclass(obj):
        if not issubclass(obj, nn.Module):
            raise FactoryError(f"factory {factory!r} names class {obj.__name__!r} of the installed package {top!r}, "
                               "which is not a torch.nn.Module subclass; name a model class (or a function "
                               "declared to return one)")
        return
    if not _returns_module(obj):
        raise FactoryError(f"factory {factory!r} names a function of the installed package {top!r} that is not "
                           "declared to return an nn.Module (no '-> SomeModel' annotation), so it is not called: "
                           "an installed package's factories are its model classes and annotated model functions. "
                           "Wrap it in a function of your own in a plugin folder ([plugins] paths in zooscope.toml)")


def _config_route(fn: Callable[..., Any], factory: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """``kwargs`` with a ``config`` dict turned into ``fn.config_class`` (a transformers model class)."""
    config_class = getattr(fn, "config_class", None)
    if not (isinstance(kwargs.get("config"), dict) and inspect.isclass(config_class)):
        return kwargs
    values = kwargs["config"]
    try:
        known = set(config_class().to_dict())
    except Exception:  # a config that needs arguments: let its own constructor judge
        known = None
    if known is not None:
        known |= set(inspect.signature(config_class.__init__).parameters) | {"num_labels"}
        known |= set(getattr(config_class, "attribute_map", {}) or {})
        unknown = sorted(set(values) - known)
        if unknown:
            raise FactoryError(f"factory {factory!r}: config keys {short_repr(unknown, 200)} are not fields of "
                               f"{config_class.__name__}; it takes {short_repr(sorted(known - {'self'}), 400)}")
    try:
        config = config_class(**values)
    except Exception as exc:
        raise FactoryError(f"factory {factory!r}: {config_class.__name__}(**config) raised "
                           f"{type(exc).__name__}: {str(exc)[:300]}") from None
    return {**kwargs, "config": config}


def _check_binding(fn: Callable[..., Any], factory: str, kwargs: dict[str, Any]) -> None:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin without a signature: the call will tell
        return
    try:
        sig.bind(**kwargs)
    except TypeError as exc:
        raise FactoryError(f"factory {factory!r}: kwargs {short_repr(sorted(kwargs), 200)} do not fit its "
                           f"signature {short_repr(str(sig), 300)}: {exc}") from None


class _TooManyModules(RuntimeError):
    pass


_BUDGET = threading.local()  # submodules the factory running in this thread may still register


def _count_submodule(module: nn.Module, name: str, submodule: Any) -> None:
    """A global registration hook, active only in a thread running a factory (:func:`call_factory`)."""
    left = getattr(_BUDGET, "modules", None)
    if left is None:
        return
    if left <= 0:
        raise _TooManyModules(name)
    _BUDGET.modules = left - 1


torch.nn.modules.module.register_module_module_registration_hook(_count_submodule)


def call_factory(factory: str, kwargs: Mapping[str, Any]) -> nn.Module:
    """``factory(**kwargs)``, checked: the callable is allowed, the kwargs bind, the result is an ``nn.Module``.

    Draws its initial weights from the global RNG (:func:`build_from_factory` seeds it in a fork).
    """
    fn = load_factory(factory, kwargs)
    call_kwargs = _config_route(fn, factory, dict(kwargs))
    _check_binding(fn, factory, call_kwargs)
    _BUDGET.modules = MAX_MODEL_MODULES
    try:
        model = fn(**call_kwargs)
    except Exception as exc:  # the user's code raised: say which spec and what
        if _TooManyModules in {type(exc), type(exc.__context__), type(exc.__cause__)}:  # even if it re-raised
            raise FactoryError(f"factory {factory!r} builds more than {MAX_MODEL_MODULES:,} submodules "
                               "(engine.bounds.MAX_MODEL_MODULES); make it smaller in kwargs") from None
        raise FactoryError(f"factory {factory!r} raised {type(exc).__name__}: {str(exc)[:300]}") from None
    finally:
        _BUDGET.modules = None
    if not isinstance(model, nn.Module):
        raise FactoryError(f"factory {factory!r} returned {type(model).__name__} {short_repr(model, 60)}, "
                           "not a torch.nn.Module")
    return model


def select_output(raw: Any, output: str) -> Any:
    """The logits inside what a forward returned: ``raw[int(output)]`` for "0", else the attribute or key."""
    if output.isdigit():
        return raw[int(output)]
    if isinstance(raw, dict):  # a dict, or a transformers ModelOutput (an OrderedDict with attributes)
        return raw[output]
    return getattr(raw, output)


_ADAPTED: dict[tuple[type, str], type] = {}


def adapt_output(model: nn.Module, output: str | None) -> nn.Module:
    """Make ``model.forward`` return the logits picked by ``output`` (None: it already does).

    The model's class is swapped for a subclass whose ``forward`` calls the original one and
    applies :func:`select_output` (as ``torch.nn.utils.parametrize`` swaps classes), so
    ``state_dict`` keys, ``functional_call``, ``deepcopy`` and tracing see the model itself,
    not a wrapper. Returns the same object.
    """
    if output is None:
        return model
    base = type(model)
    adapted = _ADAPTED.get((base, output))
    if adapted is None:
        def forward(self, *args, **kwargs):
            return select_output(base.forward(self, *args, **kwargs), output)

        adapted = type(f"{base.__name__}Logits", (base,), {"forward": forward, "_zooscope_output": output,
                                                           "__module__": __name__})
        _ADAPTED[(base, output)] = adapted
    model.__class__ = adapted
    return model


def check_output_shape(model: nn.Module, factory: str, input_shape: tuple[int, ...], n_outputs: int,
                       vocab_size: int | None) -> None:
    """Run a batch of two zero inputs through ``model`` (eval mode, no grad) and check the logits' shape.

    Expected ``(2, n_outputs)``, or for token inputs ``(2, T, n_outputs)`` as well (a language
    model's per-position logits). Train mode is restored; no running statistic changes.
    """
    dtype = torch.long if vocab_size is not None else torch.float32
    x = torch.zeros((2, *input_shape), dtype=dtype)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(x)
    except Exception as exc:
        raise FactoryError(f"factory {factory!r}: forward failed on a dataset batch of shape {tuple(x.shape)} "
                           f"({str(dtype).removeprefix('torch.')}): {type(exc).__name__}: {str(exc)[:300]}") from None
    finally:
        model.train(was_training)
    expected = [(2, n_outputs)] + ([(2, input_shape[0], n_outputs)] if vocab_size is not None else [])
    if not isinstance(out, torch.Tensor):
        fields = list(out.keys()) if isinstance(out, Mapping) else (
            f"a tuple of {len(out)}" if isinstance(out, tuple) else None)
        raise FactoryError(
            f"factory {factory!r}: forward returned {type(out).__name__}"
            f"{f' (fields {short_repr(fields, 120)})' if fields else ''}, not a tensor of logits; set "
            "output = \"logits\" (an attribute or key) or output = \"0\" (a tuple index) in the arch spec")
    if tuple(out.shape) not in expected:
        want = " or ".join(str(e) for e in expected)
        raise FactoryError(f"factory {factory!r}: forward returned logits of shape {tuple(out.shape)} for a batch of "
                           f"2; the dataset needs {want} ({n_outputs} outputs) — set the model's number of "
                           "classes in kwargs (num_classes, or num_labels in a transformers config)")


def build_from_factory(spec: ArchSpec, input_shape: tuple[int, ...], n_outputs: int,
                       vocab_size: int | None) -> nn.Module:
    """The model ``spec.factory(**spec.kwargs)``, its output adapted and its shape checked against the data.

    Called by :func:`engine.nets.build` inside its seeded RNG fork.
    """
    _check_size(spec.factory, _meta_size(spec.factory, spec.kwargs))
    model = call_factory(spec.factory, spec.kwargs)
    _check_size(spec.factory, _size(model))  # a factory that cannot build on "meta" is counted here
    model = adapt_output(model, spec.output)
    check_output_shape(model, spec.factory, input_shape, n_outputs, vocab_size)
    return model


def check_factory(spec: ArchSpec) -> None:
    """Raise :class:`FactoryError` unless ``spec.factory`` builds an ``nn.Module`` here.

    The check before anything is queued (:func:`engine.train.check_registered`): the module is
    allowed and imports, the kwargs fit, and the call returns a module. It builds the model once
    on the ``meta`` device (no memory for weights), or normally when the factory cannot do that.
    The output shape needs the dataset; :func:`engine.nets.build` checks it.
    """
    if spec.factory is None:
        return
    load_factory(spec.factory, spec.kwargs)
    n = _meta_size(spec.factory, spec.kwargs)
    if n is not None:
        _check_size(spec.factory, n)
        return
    with torch.random.fork_rng(devices=[]):  # some factories cannot build on "meta": build for real
        _check_size(spec.factory, _size(call_factory(spec.factory, spec.kwargs)))


def _size(model: nn.Module) -> int:
    return sum(t.numel() for t in model.parameters()) + sum(t.numel() for t in model.buffers())


def _meta_size(factory: str, kwargs: Mapping[str, Any]) -> int | None:
    """Parameters and buffers of ``factory(**kwargs)`` built on the ``meta`` device (no memory for
    weights, the caller's RNG untouched); None when the factory cannot build there."""
    with torch.random.fork_rng(devices=[]):
        try:
            with torch.device("meta"):
                return _size(call_factory(factory, kwargs))
        except FactoryError:
            return None


def _check_size(factory: str, n: int | None) -> None:
    if n is not None and n > MAX_MODEL_PARAMETERS:
        raise FactoryError(f"factory {factory!r} builds a model of {n:,} parameters and buffers; at most "
                           f"{MAX_MODEL_PARAMETERS:,} are allowed (engine.bounds.MAX_MODEL_PARAMETERS, 4 GiB of "
                           "float32): make it smaller in kwargs")
