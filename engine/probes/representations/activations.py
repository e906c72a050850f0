"""Capture a model's hidden representations, layer by layer, without mutating it.

A model is evaluated with :func:`torch.func.functional_call` on the parameter dict
it is given, with temporary forward hooks on the chosen submodules; the module's
own parameters are never touched. Outputs are pooled to one row per sample so every
similarity, projection or dimension probe downstream sees plain ``(N, D)``
matrices.

References
----------
.. [1] Kornblith, S., Norouzi, M., Lee, H., Hinton, G. "Similarity of Neural Network
   Representations Revisited." ICML 2019 (which layers to compare: block outputs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

__all__ = [
    "ACTIVATION_TYPES",
    "Activations",
    "capture_activations",
    "capture_over_checkpoints",
    "default_layers",
    "resolve_pool",
    "subsample_indices",
]

#: Module types whose outputs count as "an activation" when choosing default layers.
ACTIVATION_TYPES: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.LeakyReLU, nn.GELU, nn.SiLU, nn.Tanh, nn.Sigmoid, nn.ELU, nn.SELU,
    nn.Softplus, nn.Mish, nn.Hardtanh, nn.ReLU6, nn.PReLU, nn.CELU, nn.Hardswish,
)
_CONTAINERS = (nn.Sequential, nn.ModuleList)
OUTPUT = "output"
Pool = str | Callable[[Tensor], Tensor]


@dataclass(frozen=True, eq=False)
class Activations(Mapping):
    """Pooled activations of several layers on the same samples.

    Behaves as a read-only mapping ``layer name -> Tensor (N, D)`` in forward order,
    and also carries which rows of the input were used.

    Attributes
    ----------
    layers : dict[str, Tensor]
        Layer name -> CPU tensor of shape ``(N, D_layer)`` in the model's floating dtype.
    indices : numpy.ndarray
        ``(N,)`` int64 rows of the input data that were evaluated (sorted).
    targets : Tensor or None
        The targets of those rows, when the data came as an ``(inputs, targets)`` pair.
    """

    layers: dict[str, Tensor]
    indices: np.ndarray
    targets: Tensor | None = None
    meta: dict = field(default_factory=dict)

    def __getitem__(self, name: str) -> Tensor:
        return self.layers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def n_samples(self) -> int:
        return int(len(self.indices))

    def to_state(self) -> dict[str, Tensor]:
        """Flat ``name -> Tensor`` dict for a safetensors probe artifact; see :meth:`from_state`."""
        state = {f"layer/{i:03d}/{name}": t.contiguous() for i, (name, t) in enumerate(self.layers.items())}
        state["indices"] = torch.as_tensor(self.indices)
        if self.targets is not None:
            state["targets"] = self.targets.contiguous()
        return state

    @classmethod
    def from_state(cls, state: Mapping[str, Tensor]) -> Activations:
        """Inverse of :meth:`to_state` (layer order is kept by the numeric prefix)."""
        keys = sorted(k for k in state if k.startswith("layer/"))
        layers = {k.split("/", 2)[2]: state[k] for k in keys}
        return cls(layers, np.asarray(state["indices"]).astype(np.int64), state.get("targets"))


def subsample_indices(n: int, max_samples: int | None, seed: int = 0) -> np.ndarray:
    """Sorted rows to keep: all ``n`` rows, or ``max_samples`` of them drawn without replacement.

    Parameters
    ----------
    n : int
        Number of available rows.
    max_samples : int or None
        Cap; ``None`` or ``>= n`` keeps every row.
    seed : int
        Seed of the draw; the same seed gives the same rows.
    """
    if max_samples is not None and max_samples < 1:
        raise ValueError(f"max_samples must be a positive integer or None; got {max_samples}")
    if max_samples is None or max_samples >= n:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_samples, replace=False)).astype(np.int64)


def default_layers(model: nn.Module) -> list[str]:
    """Names of the submodules whose outputs :func:`capture_activations` records by default.

    The rule, in order (the first that yields anything wins; the model's own output is
    always added by the caller as ``"output"``):

    1. **Blocks**: children of an ``nn.Sequential`` / ``nn.ModuleList`` that have
       children of their own and are not containers themselves (residual blocks,
       transformer blocks; a nested ``Sequential`` is looked into, not taken whole).
    2. **Activations**: activation-function modules (:data:`ACTIVATION_TYPES`) that are
       children of an ``nn.Sequential`` -- the post-nonlinearity outputs of an MLP or a
       plain CNN written as a ``Sequential``.
    3. **Parametrised leaves**: every leaf module that owns parameters (``Linear``,
       ``Conv*``, ...) -- for a custom ``forward`` calling ``F.relu`` itself.

    Blocks nested inside other blocks are skipped (a block's output already covers
    its insides). Pass ``layers=`` explicitly for anything else.
    """
    containers = [(n, m) for n, m in model.named_modules() if isinstance(m, _CONTAINERS)]
    blocks = [
        f"{cname}.{child}" if cname else child
        for cname, c in containers
        for child, sub in c.named_children()
        if next(sub.children(), None) is not None and not isinstance(sub, _CONTAINERS)
    ]
    blocks = [b for b in blocks if not any(b.startswith(o + ".") for o in blocks if o != b)]
    if blocks:
        return blocks
    acts = [
        f"{cname}.{child}" if cname else child
        for cname, c in containers
        for child, sub in c.named_children()
        if isinstance(sub, ACTIVATION_TYPES)
    ]
    if acts:
        return acts
    return [n for n, m in model.named_modules() if n and next(m.children(), None) is None
            and next(m.parameters(recurse=False), None) is not None]


_CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.BatchNorm2d, nn.BatchNorm3d, nn.MaxPool1d, nn.MaxPool2d)
_TOKENS = (nn.Embedding, nn.MultiheadAttention, nn.LayerNorm, nn.TransformerEncoderLayer)


def resolve_pool(model: nn.Module, pool: Pool) -> Pool:
    """``'mean'`` -> ``'mean_tokens'`` for token models (an ``Embedding``, ``LayerNorm`` or
    attention module and no convolution), else ``'mean_spatial'``; other values unchanged."""
    if pool != "mean":
        return pool
    kinds = [type(m) for m in model.modules()]
    conv = any(issubclass(k, _CONV) for k in kinds)
    tokens = any(issubclass(k, _TOKENS) for k in kinds)
    return "mean_tokens" if tokens and not conv else "mean_spatial"


def _pool(out: Tensor, pool: Pool) -> Tensor:
    if callable(pool):
        return pool(out).reshape(out.shape[0], -1)
    if pool == "flatten" or out.ndim <= 2:
        return out.reshape(out.shape[0], -1)
    if pool == "mean_spatial":
        return out.mean(dim=tuple(range(2, out.ndim)))  # (B, C, *spatial) -> (B, C)
    if pool == "mean_tokens":
        return out.mean(dim=tuple(range(1, out.ndim - 1)))  # (B, T, D) -> (B, D)
    raise ValueError(f"pool must be 'mean', 'mean_spatial', 'mean_tokens', 'flatten' or a callable; got {pool!r}")


def _first_tensor(out) -> Tensor:
    if isinstance(out, Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], Tensor):
        return out[0]
    raise TypeError(f"layer output must be a Tensor or a tuple starting with one; got {type(out).__name__}")


def _split_data(data) -> tuple[Tensor, Tensor | None]:
    if isinstance(data, Tensor):
        return data, None
    if isinstance(data, Sequence) and len(data) == 2 and isinstance(data[0], Tensor):
        return data[0], data[1]
    raise TypeError("data must be an inputs Tensor or an (inputs, targets) pair of Tensors; "
                    f"got {type(data).__name__}")


def capture_activations(
    model: nn.Module,
    params: Mapping[str, Tensor],
    data,
    layers: Sequence[str] | None = None,
    *,
    pool: Pool = "mean",
    max_samples: int | None = None,
    seed: int = 0,
    batch_size: int = 1024,
    include_output: bool = True,
) -> Activations:
    """Record the outputs of chosen layers on (a subsample of) the data, in one pass.

    Parameters
    ----------
    model : nn.Module
        The architecture; evaluated with ``functional_call`` on ``params`` and its own
        buffers, in eval mode (BatchNorm uses running statistics), under ``no_grad``.
        Its parameters are never modified; its train/eval flag is restored afterwards.
    params : Mapping[str, Tensor]
        Parameter (and optionally buffer) tensors keyed as in ``named_parameters()``.
    data : Tensor or (Tensor, Tensor)
        Inputs ``(N, *input_shape)``, or an ``(inputs, targets)`` pair.
    layers : sequence of str, optional
        Submodule names (``named_modules()``). Default: :func:`default_layers`.
        A module called several times in one forward yields ``name``, ``name#1``, ...
    pool : {'mean', 'mean_spatial', 'mean_tokens', 'flatten'} or callable, default 'mean'
        How outputs with more than two dims become rows. ``'mean_spatial'`` averages
        the dims after the channel dim (``(B, C, *spatial) -> (B, C)``, the layout of
        ``Conv``/``BatchNorm``); ``'mean_tokens'`` averages the token dims
        (``(B, T, D) -> (B, D)``); ``'mean'`` picks one per model (:func:`resolve_pool`);
        ``'flatten'`` keeps everything; a callable maps ``(B, ...) -> (B, ...)``.
    max_samples : int, optional
        Evaluate at most this many rows, drawn with ``seed`` (see :func:`subsample_indices`).
    seed : int, default 0
        Seed of the subsample.
    batch_size : int, default 1024
        Rows per forward pass (memory bound only; results do not depend on it).
    include_output : bool, default True
        Also record the model's own output as layer ``"output"``.

    Returns
    -------
    Activations
        Mapping ``layer -> CPU Tensor (N, D)`` in forward order, plus the rows used. Each
        keeps the dtype the model computed it in (float64 for a float64 model); a
        non-floating output becomes float32.
    """
    x, y = _split_data(data)
    pool = resolve_pool(model, pool)
    names = list(layers) if layers is not None else default_layers(model)
    modules = dict(model.named_modules())
    unknown = [n for n in names if n not in modules]
    if unknown:
        raise ValueError(f"layers {unknown} are not submodules of {type(model).__name__}; "
                         f"known names include {list(modules)[1:12]}")
    idx = subsample_indices(len(x), max_samples, seed)
    device = next(iter(params.values())).device if params else torch.device("cpu")
    state = {**dict(model.named_buffers()), **dict(params)}
    chunks: dict[str, list[Tensor]] = {}

    def hook_for(name: str):
        def hook(_module, _inp, out):
            k = sum(1 for key in current if key == name or key.startswith(name + "#"))
            current[name if k == 0 else f"{name}#{k}"] = _pool(_first_tensor(out).detach(), pool)
        return hook

    current: dict[str, Tensor] = {}
    handles = [modules[n].register_forward_hook(hook_for(n)) for n in dict.fromkeys(names)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            for start in range(0, len(idx), batch_size):
                rows = torch.as_tensor(idx[start:start + batch_size])
                current.clear()
                out = functional_call(model, state, (x[rows].to(device),))
                if include_output:
                    current[OUTPUT] = _pool(_first_tensor(out), pool)
                for key, t in current.items():
                    chunks.setdefault(key, []).append((t if t.is_floating_point() else t.float()).cpu())
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    acts = {k: torch.cat(v) for k, v in chunks.items()}
    targets = y[torch.as_tensor(idx)] if y is not None else None
    return Activations(acts, idx, targets, {"pool": pool if isinstance(pool, str) else "callable"})


def capture_over_checkpoints(
    model: nn.Module,
    checkpoints: Sequence[Mapping[str, Tensor]],
    data,
    layers: Sequence[str] | None = None,
    **kwargs,
) -> list[Activations]:
    """:func:`capture_activations` for each parameter dict of one run, on the same rows.

    Every checkpoint sees the same subsample (same ``max_samples`` and ``seed``), so
    the results line up row by row for
    :func:`~engine.probes.representations.similarity_grid.similarity_over_training`,
    :func:`~engine.probes.representations.geometry.neural_collapse_over_training` and
    :func:`~engine.probes.representations.projection.aligned_projection`.
    """
    return [capture_activations(model, params, data, layers, **kwargs) for params in checkpoints]
