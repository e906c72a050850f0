"""Import trained weights as a run with one checkpoint.

Weights load from safetensors, or from ``torch.load(..., weights_only=True)``: never
an arbitrary pickle. A key or shape mismatch with the named architecture is
explained before anything is written.
"""

from __future__ import annotations

import math
import re
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import Tensor

from engine import data as zdata
from engine import nets
from engine.bounds import MAX_IMPORT_WEIGHTS_BYTES, check_file_size, check_name
from engine.config import ArchSpec, DatasetSpec, TrainSpec
from engine.train import task_metrics

from .provenance import arch_label, file_sha256, import_provenance

__all__ = ["ImportedWeights", "check_weight_values", "evaluate_state", "import_weights", "load_weights",
           "match_state_dict", "record_import", "record_import_request"]

EVAL_SAMPLES = 2048  # first samples of each split that an imported checkpoint is evaluated on


def load_weights(path: str | Path) -> dict[str, Tensor]:
    """Read a flat ``name -> tensor`` dict from ``.safetensors`` or a weights-only torch file."""
    path = Path(path)
    check_file_size(path, MAX_IMPORT_WEIGHTS_BYTES, "weights file",
                    fix="the limit is engine.bounds.MAX_IMPORT_WEIGHTS_BYTES")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ValueError(f"{path} is not a readable safetensors file: {exc}") from None
    _check_unpacked_size(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for non-weights content
        raise ValueError(
            f"{path} could not be loaded with torch.load(weights_only=True) ({type(exc).__name__}); "
            "only plain tensors are accepted: save with safetensors or torch.save(model.state_dict())"
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise ValueError(f"{path} does not hold a dict of tensors (a state_dict); got {type(obj).__name__}")
    return dict(obj)


def _check_unpacked_size(path: Path) -> None:
    """A torch zip file's records may be deflated: bound what they declare they inflate to (torch allocates
    each record at its declared size), so a few KB cannot unpack into gigabytes."""
    if not zipfile.is_zipfile(path):
        return
    try:
        with zipfile.ZipFile(path) as z:
            total = sum(info.file_size for info in z.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable torch file: {exc}") from None
    if total > MAX_IMPORT_WEIGHTS_BYTES:
        raise ValueError(f"{path} decompresses to {total:,} bytes; a weights file may hold at most "
                         f"{MAX_IMPORT_WEIGHTS_BYTES:,} (engine.bounds.MAX_IMPORT_WEIGHTS_BYTES)")


def match_state_dict(model: torch.nn.Module, state: dict[str, Tensor], label: str) -> None:
    """Raise ``ValueError`` explaining every key and shape mismatch between ``state`` and ``model``."""
    aliases = tied_aliases(model)  # a checkpoint may hold a tied tensor once (Zooscope's trainer does)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k in state or k not in aliases}
    got = {k: tuple(v.shape) for k, v in state.items()}
    problems = []
    extra = sorted(set(got) - set(expected))
    missing = sorted(set(expected) - set(got))
    if extra:
        problems.append(f"checkpoint has keys {extra} that architecture {label!r} does not")
    if missing:
        problems.append(f"architecture {label!r} needs keys {missing} that the checkpoint lacks")
    for k in sorted(set(got) & set(expected)):
        if got[k] != expected[k]:
            problems.append(f"{k!r} has shape {got[k]} in the checkpoint but {expected[k]} in {label!r}")
    if problems:
        hint = _depth_hint(extra, missing)
        raise ValueError("; ".join(problems) + (f"; {hint}" if hint else "")
                         + ("; pass the --kwargs (and --dataset) it was built with" if "(**" in label
                            else "; pass the --width/--depth (and --dataset) it was trained with"))


def tied_aliases(model: torch.nn.Module) -> set[str]:
    """``state_dict`` keys naming a tensor an earlier key already names (GPT-2's ``lm_head.weight``)."""
    seen: set[int] = set()
    aliases = set()
    for key, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in seen:
            aliases.add(key)
        seen.add(id(tensor))
    return aliases


def check_weight_values(model: torch.nn.Module, state: dict[str, Tensor]) -> None:
    """Raise ``ValueError`` naming every tensor that is not usable as the model's weights.

    A tensor the model holds in floating point (every weight and bias; not a counter such
    as BatchNorm's ``num_batches_tracked``) must be floating point in ``state`` too, and
    finite: integer weights are a file of something else, and NaN/inf weights evaluate to
    NaN everywhere, so neither is recorded as a finished run.
    """
    expected = model.state_dict()
    floating = [k for k in state if k in expected and expected[k].is_floating_point()]
    integer = [k for k in floating if not state[k].is_floating_point()]
    non_finite = [(k, int((~torch.isfinite(state[k])).sum())) for k in floating if k not in integer]
    non_finite = [(k, n) for k, n in non_finite if n]
    problems = []
    if integer:
        dtypes = sorted({str(state[k].dtype) for k in integer})
        problems.append(f"{_listed(integer)} {'has' if len(integer) == 1 else 'have'} dtype {', '.join(dtypes)}, "
                        "but the architecture holds weights in floating point")
    if non_finite:
        problems.append(_listed([f"{k!r} ({n} of {state[k].numel()})" for k, n in non_finite], quote=False)
                        + (" holds" if len(non_finite) == 1 else " hold") + " NaN/inf values")
    if problems:
        raise ValueError("; ".join(problems) + "; these are not usable weights (a diverged or corrupted checkpoint, "
                         "or a file of something else): export the model's floating-point state_dict from a finite "
                         "checkpoint")


def _listed(names: list[str], quote: bool = True, limit: int = 5) -> str:
    shown = [repr(n) if quote else n for n in names[:limit]]
    return ", ".join(shown) + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _depth_hint(extra: list[str], missing: list[str]) -> str:
    layer = re.compile(r"(\d+)")
    idx = [int(m.group(1)) for k in extra if (m := layer.search(k))]
    if extra and not missing and idx:
        return "was it trained with a greater depth?"
    if missing and not extra:
        return "was it trained with a smaller depth?"
    return ""


class ImportedWeights:
    """A checked state dict with its run config, headline metrics and provenance (``built_by``)."""

    def __init__(self, config: TrainSpec, state: dict[str, Tensor], metrics: dict[str, float],
                 built_by: dict | None = None):
        self.config, self.state, self.metrics, self.built_by = config, state, metrics, built_by


def evaluate_state(model: torch.nn.Module, state: dict[str, Tensor], ds) -> dict[str, float]:
    """``train_loss, train_acc, test_loss, test_acc`` of ``state`` loaded into ``model`` on the first
    :data:`EVAL_SAMPLES` samples of each split of ``ds`` (an ``engine.data`` dataset); the model is
    left holding ``state`` in eval mode."""
    missing = model.load_state_dict(state, strict=False).missing_keys
    if set(missing) - tied_aliases(model):
        model.load_state_dict(state)  # raises, naming what is wrong
    model.eval()
    metrics = {}
    with torch.no_grad():
        for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
            x, y = x[:EVAL_SAMPLES], y[:EVAL_SAMPLES]
            loss, acc = task_metrics(model(x.float() if x.is_floating_point() else x), y)
            metrics[f"{split}_loss"], metrics[f"{split}_acc"] = loss, acc
    return metrics


def import_weights(path: str | Path, arch: ArchSpec, dataset: DatasetSpec) -> ImportedWeights:
    """Load, check against ``arch`` on ``dataset``, and evaluate; raises before any write."""
    state = load_weights(path)
    ds = zdata.load(dataset)
    model = nets.build(arch, ds.input_shape, ds.n_outputs, vocab_size=ds.vocab_size)
    match_state_dict(model, state, arch_label(arch))
    check_weight_values(model, state)
    metrics = evaluate_state(model, state, ds)
    config = TrainSpec(dataset=dataset, arch=arch, steps=1, checkpoints=[1])
    built_by = import_provenance(arch, path, {Path(path).name: file_sha256(path)})
    return ImportedWeights(config, {k: v.contiguous() for k, v in state.items()}, metrics, built_by)


def record_import(st, zoo: str, imported: ImportedWeights, *, name: str, owner: str, access=None) -> str:
    """Write an imported model as a finished run with one checkpoint in zoo ``zoo`` (created if new).

    ``owner`` is recorded on the run (and on the zoo when it is new). With an
    ``access`` policy (``engine.auth.AccessPolicy``), an owner whose role may not
    import raises ``PermissionDenied`` before anything is written. Zoo and run names
    are checked (:func:`engine.bounds.check_name`), and the zoo, run and checkpoint
    are written in one transaction.
    """
    import store

    if access is not None:
        access.require(owner, "import")
    zoo, name = check_name(zoo, "zoo name"), check_name(name, "run name")
    arch = imported.config.arch
    metrics = {k: (v if math.isfinite(v) else None) for k, v in imported.metrics.items()}
    with st.transaction():
        sha = st.put_tensors(imported.state)  # the artifact row rolls back with the rest; the file is gc'd
        try:
            zoo_id = st.get_zoo(zoo)["zoo_id"]
        except store.NotFoundError:
            zoo_id = st.create_zoo(zoo, owner=owner)
        (run_id,) = st.add_runs([{
            "zoo_id": zoo_id, "config": imported.config.model_dump(mode="json"), "name": name, "seed": 0,
            "hparams": {"arch": arch.factory or arch.name, "width": arch.width, "depth": arch.depth},
            "status": "done", "owner": owner, "finished_at": datetime.now(UTC).replace(tzinfo=None),
            "origin": "imported", "built_by": imported.built_by}])
        st.add_checkpoint(run_id, 0, sha, epoch=0.0, **metrics)
    return run_id


def import_command(args, path: Path) -> int:
    """``zooscope import``: check the file, then record a run with one checkpoint."""
    import store
    from engine.auth import cli_policy
    from engine.data import use_registered_folder
    from engine.settings import load_settings
    from store.paths import StoreLayout

    use_registered_folder(StoreLayout(Path(path).absolute()).datasets)  # --dataset may name a registered set
    access = cli_policy(load_settings(path), path)
    if access is not None:
        access.require(args.owner, "import")
    zoo, name = check_name(args.zoo, "zoo name"), check_name(args.name or Path(args.weights).stem, "run name")
    arch = ArchSpec(name=args.arch, width=args.width, depth=args.depth)
    imported = import_weights(args.weights, arch, DatasetSpec(name=args.dataset))
    try:
        st = store.open_store(path)
    except store.StoreBusyError as exc:
        return _hand_over_import(path, exc, imported, zoo=zoo, name=name, owner=args.owner)
    with st:
        run_id = record_import(st, zoo, imported, name=name, owner=args.owner, access=access)
    print(f"imported {args.weights} as run {run_id} in zoo {args.zoo!r}: "
          f"test accuracy {imported.metrics['test_acc']:.4f}")
    return 0


def _hand_over_import(path: Path, busy, imported: ImportedWeights, *, zoo: str, name: str, owner: str) -> int:
    """The store is owned by another process: leave the checked weights and a request for it to record them."""
    import store

    sha = store.put_tensors_at(path, imported.state)  # artifacts need no catalog
    req = store.drop_request(path, "import_run", {
        "zoo": zoo, "name": name, "owner": owner, "artifact_sha": sha,
        "config": imported.config.model_dump(mode="json"), "built_by": imported.built_by,
        "metrics": {k: (v if math.isfinite(v) else None) for k, v in imported.metrics.items()}})
    print(f"{busy}\nYour import was handed to that process instead ({req.name}): run {name!r} appears in zoo "
          f"{zoo!r} once it takes the request (within a second while it runs).")
    return 0


def record_import_request(st, payload: dict, *, access=None) -> str:
    """Record an import handed over by :func:`import_command` (a ``requests/`` entry of kind ``import_run``).

    The weights are the artifact the command wrote; reading them verifies their hash.
    """
    metrics = {k: (float("nan") if v is None else float(v)) for k, v in payload["metrics"].items()}
    imported = ImportedWeights(TrainSpec.model_validate(payload["config"]), st.get_tensors(payload["artifact_sha"]),
                               metrics, payload.get("built_by"))
    return record_import(st, payload["zoo"], imported, name=payload["name"], owner=payload.get("owner", "local"),
                         access=access)
