"""Permutation symmetries inferred from a model's traced graph, and verified on it.

:func:`infer_perm_spec` traces a model with ``torch.export`` (non-strict: an ATen-level
``torch.fx`` graph), gives every axis of every tensor a label of permutation classes
(:mod:`engine.nets.infer_labels`), lets each operation constrain them
(:mod:`engine.nets.infer_rules`) and reads off, for every ``state_dict`` tensor, which
perm acts on which axis -- in the :class:`~engine.nets.PermutationSpec` the alignment
code uses. Model inputs and outputs stay fixed; so does anything an operation cannot
carry a permutation through, and those hidden axes are listed in ``spec.fixed``.

Why ``torch.export`` and not ``torch.fx.symbolic_trace``: symbolic tracing stops at the
first Python branch on a traced value, which Hugging Face models take everywhere
(measured with transformers 5.24 and torch 2.13: ``ResNetForImageClassification``,
``ViTForImageClassification`` and ``GPT2LMHeadModel`` all fail to symbolic_trace, and
transformers 5 no longer ships its own fx tracer); ``torch.export`` runs the Python
code on fake tensors, traces all three, and yields a small, normalised set of ATen
operations (``aten.linear``, ``aten.conv2d``, ``aten.view``...) instead of every
spelling of them.

Then every spec is verified at once (:func:`check_perm_spec`): a random permutation
under it, applied to a copy of the model with perturbed weights in float64 and eval
mode, must leave every output unchanged up to rounding.
"""

from __future__ import annotations

import copy
import inspect
import math
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.utils import _pytree as pytree

from engine.nets.infer_attention import AttentionRegions
from engine.nets.infer_labels import Classes, Seg
from engine.nets.infer_layout import meta_shape
from engine.nets.infer_rules import Ctx, apply_rule, op_name
from engine.nets.permutation import BlockPerm, PermutationSpec, apply_permutation, random_permutation

__all__ = ["PermutationSpecError", "check_perm_spec", "infer_perm_spec"]

#: Allowed output change, in units of eps(dtype) * max|output| per graph node (see check_perm_spec).
_ROUNDING_PER_NODE = 64


class PermutationSpecError(ValueError):
    """A permutation spec that does not describe a symmetry of the model, or a model that cannot be traced."""


def infer_perm_spec(model: nn.Module, example_input, *, check: bool = True, seed: int = 0) -> PermutationSpec:
    """The permutation symmetries of ``model``, inferred from its traced graph.

    Parameters
    ----------
    model : nn.Module
        Any module ``torch.export`` can trace; traced in eval mode (its mode is restored).
    example_input : Tensor, tuple of Tensors or dict of keyword Tensors
        One valid input (a batch of 2 is enough); only shapes and dtypes matter for the
        trace, the self-check runs the model on it.
    check : bool, default True
        Verify the spec with :func:`check_perm_spec` before returning it.
    seed : int
        Seeds the self-check's random permutation and weight perturbation.

    Returns
    -------
    PermutationSpec
        Every ``state_dict`` key, each axis mapped to a perm (a name, a :class:`BlockPerm`
        for heads and flattened channels, or a tuple of them for a concatenation) or
        ``None``. Perms are named after the module whose output they reorder.
        ``spec.fixed`` lists hidden axes kept in place, with the operation that pinned them.

    Raises
    ------
    PermutationSpecError
        If the model cannot be traced (naming the module that stopped the trace), or the
        inferred spec fails the self-check (naming the perm and its layers).
    """
    example_input = _without_cache(model, example_input)
    program = _trace(model, example_input)
    spec = _Inference(model, program).spec()
    if check:
        check_perm_spec(model, spec, example_input, seed=seed)
    return spec


def _without_cache(model: nn.Module, example_input):
    """Hugging Face models return a key/value cache by default (an object torch.export cannot
    output, and head axes that would pin every head); it changes no logits, so it is turned off."""
    config = getattr(model, "config", None)
    if not getattr(config, "use_cache", False):
        return example_input
    args, kwargs = _as_args(example_input)
    if "use_cache" in kwargs or "use_cache" not in inspect.signature(model.forward).parameters:
        return example_input
    if args:
        names = [n for n in inspect.signature(model.forward).parameters if n != "self"]
        kwargs |= dict(zip(names, args))
    return {**kwargs, "use_cache": False}


# ---------------------------------------------------------------- tracing


def _as_args(example_input) -> tuple[tuple, dict]:
    if isinstance(example_input, Mapping):
        return (), dict(example_input)
    if isinstance(example_input, tuple | list):
        return tuple(example_input), {}
    return (example_input,), {}


def _trace(model: nn.Module, example_input):
    """``torch.export`` in eval mode; a failure names the innermost module being run."""
    args, kwargs = _as_args(example_input)
    stack: list[str] = []
    names = {id(m): name for name, m in model.named_modules()}
    hooks = []
    for m in model.modules():
        hooks.append(m.register_forward_pre_hook(lambda mod, _: _push(stack, names.get(id(mod), "?"))))
        hooks.append(m.register_forward_hook(lambda mod, _a, _o: _pop(stack)))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.export.export(model, args, kwargs, strict=False)
    except Exception as err:  # noqa: BLE001 -- any trace failure becomes one clear message
        where = stack[-1] if stack else ""
        module = dict(model.named_modules()).get(where, model)
        label = f"module {where!r} ({type(module).__name__})" if where else f"the top-level {type(model).__name__}"
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else type(err).__name__
        raise PermutationSpecError(
            f"cannot infer the permutation symmetries of {type(model).__name__}: tracing it with torch.export "
            f"stopped in {label}: {type(err).__name__}: {first}. If that is Python control flow on a tensor's "
            "values (if x.sum() > 0: ...), write it with torch.where or torch.cond; or give the architecture a "
            "hand-written perm_spec (engine.nets.register(name, factory, perm_spec=...))"
        ) from err
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)


def _push(stack: list, name: str) -> None:
    stack.append(name)  # a hook must return None, or it replaces the module's input


def _pop(stack: list) -> None:
    if stack:
        stack.pop()


# ---------------------------------------------------------------- the graph walk


class _Inference:
    """Walks an exported graph once, labelling every tensor's axes, then reads off the spec."""

    def __init__(self, model: nn.Module, program):
        self.model = model
        self.program = program
        self.k = Classes()
        self.env: dict = {}
        self.keys = _state_keys(model)  # id(tensor) -> every state_dict key naming it
        self.labels: dict[str, tuple] = {}  # state_dict key -> labels of its axes
        self.mha = AttentionRegions(model, program.graph, program.graph_signature.inputs_to_parameters)

    def spec(self) -> PermutationSpec:
        sig = self.program.graph_signature
        sources = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}
        for node in self.program.graph.nodes:
            if node.op == "placeholder":
                self._placeholder(node, sources.get(node.name))
            elif node.op == "call_function":
                self._call(node)
            elif node.op == "output":
                for leaf in pytree.tree_leaves(node.args[0]):
                    if isinstance(leaf, torch.fx.Node) and isinstance(self.env.get(leaf), tuple):
                        for label in self.env[leaf]:
                            self.k.fix_label(label, "model output", False)
        return self._read_spec()

    def _placeholder(self, node, fqn: str | None) -> None:
        val = node.meta.get("val")
        if not isinstance(val, Tensor):
            self.env[node] = None
            return
        shape = tuple(val.shape)
        tensor = _get_tensor(self.model, fqn) if fqn else None
        keys = self.keys.get(id(tensor), []) if tensor is not None else []
        if keys:
            labels = tuple(self.k.fresh_label(n) for n in shape)
            for key in keys:
                self.labels[key] = labels
        elif fqn is None and node.name in self.program.graph_signature.user_inputs:
            labels = tuple(self.k.fixed_label(n) for n in shape)  # model inputs
        else:  # non-persistent buffers and constants: not in the state_dict, so never permuted
            why = (f"combined with {fqn or node.name!r}, a tensor outside the state_dict that cannot be permuted", True)
            labels = tuple((Seg("f", n, why=why),) if n else () for n in shape)
        self.env[node] = labels

    def _call(self, node) -> None:
        if node in self.mha.inner:
            self.env[node] = self.mha.output_labels(self.k, self.env, self.labels, node)
            return
        args = _full_args(node)
        vals = [self._value(a) for a in args]
        shapes = [self._shape(a) for a in args]
        out_shape = meta_shape(node)
        self.env[node] = apply_rule(node.target, Ctx(self.k, out_shape, _where(node)), vals, shapes)

    def _value(self, a):
        if isinstance(a, torch.fx.Node):
            return self.env.get(a)
        if isinstance(a, list | tuple) and any(isinstance(x, torch.fx.Node) for x in a):
            return [self.env.get(x) if isinstance(x, torch.fx.Node) else x for x in a]
        return a

    def _shape(self, a):
        if isinstance(a, torch.fx.Node):
            return meta_shape(a)
        if isinstance(a, list | tuple) and any(isinstance(x, torch.fx.Node) for x in a):
            return [meta_shape(x) if isinstance(x, torch.fx.Node) else None for x in a]
        return None

    # ------------------------------------------------------------ reading the spec
    def _read_spec(self) -> PermutationSpec:
        state = self.model.state_dict(keep_vars=True)
        names = self._perm_names(state)
        axes, fixed = {}, {}
        for key, tensor in state.items():
            labels = self.labels.get(key)
            if labels is None:
                axes[key] = (None,) * tensor.ndim
                continue
            axes[key] = tuple(self._entry(label, n, names) for label, n in zip(labels, tensor.shape))
            for axis, label in enumerate(labels):
                reasons = self.k.fixed_reasons(label)
                if reasons and tensor.shape[axis] > 1:
                    fixed[f"{key} axis {axis}"] = reasons[0]
        return PermutationSpec.from_axes(axes, fixed=fixed)

    def _perm_names(self, state) -> dict[int, str]:
        """A name per class: the module whose output axis (axis 0 of its weight) it is, else ``key:axis``."""
        found: dict[int, list[tuple[int, str]]] = {}
        for key, tensor in state.items():
            module, _, leaf = key.rpartition(".")
            weight = state.get(f"{module}.weight" if module else "weight")
            for axis, label in enumerate(self.labels.get(key, ())):
                for seg in self.k.normalize(label):
                    if seg.kind == "c":
                        if leaf == "bias" and weight is not None and weight.ndim >= 2:
                            rank = 0  # a layer's bias: its output units, whatever the weight layout
                        elif leaf == "weight" and axis == 0 and tensor.ndim >= 2:
                            rank = 1
                        else:
                            rank = 2
                        found.setdefault(seg.cls, []).append((rank, module if rank < 2 else f"{key}:{axis}"))
        names, taken = {}, set()
        for cls, options in found.items():
            if self.k.length[cls] // self.k.unit[cls] < 2:
                continue  # a perm of one unit moves nothing
            name = self.k.hints.get(cls) or min(options, key=lambda o: o[0])[1]
            base, i = name, 1
            while name in taken:
                i += 1
                name = f"{base}#{i}"
            taken.add(name)
            names[cls] = name
        return names

    def _entry(self, label, length: int, names: dict[int, str]):
        parts, pos = [], 0
        for seg in self.k.normalize(label):
            n = self.k.seg_len(seg)
            if seg.kind == "c" and seg.cls in names:
                unit = self.k.unit[seg.cls]
                block = unit * seg.scale
                assert block.denominator == 1, (seg, unit)
                parts.append(BlockPerm(names[seg.cls], int(block), pos, self.k.length[seg.cls] // unit))
            pos += n
        if not parts:
            return None
        if len(parts) == 1 and parts[0].offset == 0 and parts[0].units * parts[0].block == length:
            return parts[0].perm if parts[0].block == 1 else BlockPerm(parts[0].perm, parts[0].block)
        return parts[0] if len(parts) == 1 else tuple(parts)


def _state_keys(model: nn.Module) -> dict[int, list[str]]:
    keys: dict[int, list[str]] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        keys.setdefault(id(tensor), []).append(key)
    return keys


def _get_tensor(model: nn.Module, fqn: str):
    module_name, _, attr = fqn.rpartition(".")
    try:
        return getattr(model.get_submodule(module_name), attr)
    except AttributeError:
        return None


def _full_args(node) -> list:
    """Positional arguments with keyword arguments filled in by the op's schema."""
    args = list(node.args)
    schema = getattr(node.target, "_schema", None)
    if schema is None or not node.kwargs:
        return args
    for i, arg in enumerate(schema.arguments):
        if arg.name in node.kwargs:
            while len(args) <= i:
                missing = schema.arguments[len(args)]
                args.append(missing.default_value if missing.has_default_value() else None)
            args[i] = node.kwargs[arg.name]
    return args


def _where(node) -> str:
    stack = node.meta.get("nn_module_stack") or {}
    module = list(stack.values())[-1][0] if stack else ""
    module = module.replace("L['self'].", "").replace("L__self__.", "")
    return f"aten.{op_name(node.target)} in module {module!r}" if module else f"aten.{op_name(node.target)}"


# ---------------------------------------------------------------- the self-check


@torch.no_grad()
def check_perm_spec(model: nn.Module, spec: PermutationSpec, example_input, *, seed: int = 0) -> float:
    """Verify that ``spec`` is a symmetry of ``model``: permuting it changes no output.

    A copy of the model, in eval mode and float64 where it converts, gets every floating
    state tensor perturbed (so that BatchNorm statistics and LayerNorm gains at their
    initial values cannot hide a missing entry), and a random permutation under ``spec``
    in which no perm is the identity. Its outputs on ``example_input`` before and after
    must agree within ``64 * eps * nodes * max|output|``: reordering a sum of float numbers
    changes it by at most a few ulps of its largest partial sum, and errors grow at most
    about linearly with the number of operations ``nodes`` between input and output (the
    number of parameterised tensors here, an upper bound on depth). In float64 that is
    ~1e-12 relative; a wrong spec changes outputs by ~1e-1 relative.

    Returns
    -------
    float
        The largest output change.

    Raises
    ------
    PermutationSpecError
        Naming the perm (and the first tensors it acts on) whose permutation alone
        changes the outputs.
    """
    twin, x = _float64_twin(model, example_input, seed)
    state = twin.state_dict()
    unique = [keys[0] for keys in _state_keys(twin).values()]  # tied weights: functional_call takes one key
    state = {key: state[key] for key in unique}
    perms = _moving_permutation(spec, state, seed)
    nodes = max(1, len(state))
    before = _outputs(twin, state, x)
    diff, limit = _compare(before, _outputs(twin, apply_permutation(spec, perms, state), x), nodes, twin)
    if diff <= limit:
        return diff
    culprits = []
    for name in sorted(perms):
        one = apply_permutation(spec, {name: perms[name]}, state)
        d, lim = _compare(before, _outputs(twin, one, x), nodes, twin)
        if d > lim:
            where = ", ".join(f"{k} axis {a}" for k, a in spec.perm_to_axes[name][:4])
            culprits.append(f"perm {name!r} (on {where}) changes them by {d:.3g}")
    raise PermutationSpecError(
        f"the permutation spec is not a symmetry of {type(model).__name__}: permuting it changes the outputs "
        f"by up to {diff:.3g} (allowed {limit:.3g}); " + ("; ".join(culprits) or "no single perm does it alone")
        + ". Remove that perm from the spec or fix its axes"
    )


def _float64_twin(model: nn.Module, example_input, seed: int):
    twin = copy.deepcopy(model).eval()
    args, kwargs = _as_args(example_input)
    try:
        twin = twin.double()
        cast = [a.double() if isinstance(a, Tensor) and a.is_floating_point() else a for a in args]
        kw = {k: v.double() if isinstance(v, Tensor) and v.is_floating_point() else v for k, v in kwargs.items()}
        twin(*cast, **kw)
        args, kwargs = cast, kw
    except (RuntimeError, TypeError):
        twin = copy.deepcopy(model).eval()
    gen = torch.Generator().manual_seed(seed)
    seen = set()
    for name, t in twin.state_dict(keep_vars=True).items():
        if id(t) in seen or not t.is_floating_point():
            continue
        seen.add(id(t))
        noise = torch.randn(t.shape, generator=gen, dtype=torch.float64).to(t)
        if name.endswith("running_var"):
            t.data.copy_(0.5 + noise.abs())
        else:
            t.data.add_(noise * (0.1 * float(t.detach().abs().mean()) + 0.05))
    return twin, (tuple(args), kwargs)


def _moving_permutation(spec: PermutationSpec, state, seed: int) -> dict[str, Tensor]:
    perms = random_permutation(spec, state, seed)
    return {name: (p.roll(1) if torch.equal(p, torch.arange(len(p))) else p) for name, p in perms.items()}


def _outputs(model: nn.Module, state, x) -> list[Tensor]:
    args, kwargs = x
    out = torch.func.functional_call(model, dict(state), tuple(args), dict(kwargs))
    return [t for t in pytree.tree_leaves(out) if isinstance(t, Tensor) and t.is_floating_point()]


def _compare(before: list[Tensor], after: list[Tensor], nodes: int, model) -> tuple[float, float]:
    eps = max(torch.finfo(t.dtype).eps for t in before) if before else 0.0
    scale = max((float(t.abs().max()) for t in before if t.numel()), default=1.0)
    diff = max((float((a - b).abs().max()) for a, b in zip(before, after) if a.numel()), default=0.0)
    return diff, _ROUNDING_PER_NODE * eps * nodes * max(scale, 1.0) + math.ulp(1.0)
