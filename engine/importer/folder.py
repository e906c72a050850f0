"""Which files of a folder are checkpoints, and at which step: file names, or a manifest.

Nothing here reads a tensor; it only decides what :mod:`engine.importer.trajectory` will load.

File names (the stem, without the suffix) give the step by these patterns, matched
case-insensitively, each a word of the stem (``_``, ``-``, ``.`` or ``=`` around it):

==============================  =======================================
``step_500``, ``step-500``,     step 500 (also ``global_step``, ``iter``,
``model_step500``               ``iteration``, ``it``)
``ckpt-1200``, ``checkpoint_3`` step 1200, step 3
``epoch_3``, ``ep3``            epoch 3, recorded at step 3
``epoch=3-step=1200``           epoch 3 at step 1200 (PyTorch Lightning)
``500``                         step 500 (a bare number)
==============================  =======================================

Checkpoint files end in ``.safetensors``, ``.pt``, ``.pth``, ``.bin`` or ``.ckpt``; a
sub-folder whose name gives a step and that holds one weights file (Hugging Face
Trainer's ``checkpoint-500/model.safetensors``) counts as that file. Other files are
not checkpoints and are left alone. A ``manifest.json`` in the folder (or one named
on the command line) replaces the file names: it lists each checkpoint's file, step,
and optionally its epoch and metrics::

    {"checkpoints": [{"file": "best.pt", "step": 500, "epoch": 2, "metrics": {"val_acc": 0.91}}]}
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from engine.bounds import MAX_CHECKPOINTS, MAX_IMPORT_SIDE_FILE_BYTES, MAX_STEPS, check_file_size, short_repr

__all__ = ["WEIGHT_SUFFIXES", "CheckpointFile", "check_inside", "discover_checkpoints", "read_manifest",
           "step_from_name"]

WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
_HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin")
_STEP_WORDS = ("global_step", "iteration", "step", "iter", "it", "checkpoint", "ckpt")
_EPOCH_WORDS = ("epoch", "ep")
_TOKEN = re.compile(r"(?<![A-Za-z0-9])(" + "|".join(_STEP_WORDS + _EPOCH_WORDS) + r")[_\-=]?(\d{1,12})(?![0-9A-Za-z])",
                    re.IGNORECASE)
PATTERNS_HELP = ("step_500, ckpt-1200, checkpoint_3, iter100, epoch_3, epoch=3-step=1200 or a bare number "
                 "such as 500.pt")


@dataclass(frozen=True)
class CheckpointFile:
    """A checkpoint to import: its file, step, epoch and the metrics its manifest gave."""

    path: Path
    name: str  # as shown in messages: the path relative to the imported folder
    step: int
    epoch: float | None = None
    metrics: dict[str, float] = field(default_factory=dict)


def step_from_name(stem: str) -> tuple[int, float | None] | None:
    """``(step, epoch)`` read from a file name's stem by the patterns above, or None.

    Raises ``ValueError`` when the name gives two different steps (``step_5_iter_7``).
    """
    steps, epochs = set(), set()
    for word, number in _TOKEN.findall(stem):
        (epochs if word.lower() in _EPOCH_WORDS else steps).add(int(number))
    if len(steps) > 1 or len(epochs) > 1:
        raise ValueError(f"file name {stem!r} names more than one step or epoch ({sorted(steps | epochs)})")
    if steps:
        return steps.pop(), (float(epochs.pop()) if epochs else None)
    if epochs:
        epoch = epochs.pop()
        return epoch, float(epoch)
    if stem.isdigit() and len(stem) <= 12:
        return int(stem), None
    return None


def _weights_in(folder: Path) -> Path | None:
    """The one weights file of a Hugging Face style checkpoint folder, or None."""
    for name in _HF_WEIGHTS:
        if (folder / name).is_file():
            return folder / name
    found = [p for p in folder.iterdir() if p.is_file() and p.suffix in WEIGHT_SUFFIXES]
    return found[0] if len(found) == 1 else None


def _candidates(folder: Path) -> list[tuple[str, Path]]:
    """``(shown name, weights file)`` of every checkpoint-looking entry, at most ``MAX_CHECKPOINTS``."""
    found: list[tuple[str, Path]] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_file() and entry.suffix in WEIGHT_SUFFIXES:
            found.append((entry.name, entry))
        elif entry.is_dir() and _TOKEN.search(entry.name) and (inner := _weights_in(entry)) is not None:
            found.append((f"{entry.name}/{inner.name}", inner))
        if len(found) > MAX_CHECKPOINTS:
            raise ValueError(f"{folder} holds more than {MAX_CHECKPOINTS} checkpoint files; one run may have at most "
                             f"{MAX_CHECKPOINTS} (engine.bounds.MAX_CHECKPOINTS): import a subset (list it in a "
                             "manifest.json) or thin the folder")
    check_inside([name for name, path in found if not path.resolve().is_relative_to(folder.resolve())], folder)
    return found


def check_inside(outside: list[str], folder: Path) -> None:
    """``ValueError`` naming the entries of ``folder`` that are links to files outside it (as a manifest's
    files may not be): whoever can write into a folder that gets imported must not make the importer
    read, and record in a shared zoo, a file of theirs elsewhere."""
    if outside:
        raise ValueError(f"{_listed(outside, quote=False)} in {folder} lead outside it (symbolic links); "
                         "copy the files into the folder to import them")


def discover_checkpoints(folder: str | Path, manifest: str | Path | None = None) -> list[CheckpointFile]:
    """The checkpoints of ``folder`` by step, from ``manifest`` (default ``folder/manifest.json`` if present)
    or from the file names; ``ValueError`` explaining every file it cannot place."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder; import-run takes a folder of checkpoint files "
                         "(for one file use `zooscope import`)")
    if manifest is None and (folder / "manifest.json").is_file():
        manifest = folder / "manifest.json"
    files = read_manifest(manifest, folder) if manifest is not None else _from_names(folder)
    if not files:
        raise ValueError(f"{folder} holds no checkpoint files (names ending in {', '.join(WEIGHT_SUFFIXES)})")
    _check_unique_steps(files)
    return sorted(files, key=lambda f: f.step)


def _from_names(folder: Path) -> list[CheckpointFile]:
    files, unreadable = [], []
    for name, path in _candidates(folder):
        stem = name.split("/")[0] if "/" in name else Path(name).stem
        try:
            got = step_from_name(stem)
        except ValueError as exc:
            unreadable.append(f"{name} ({exc})")
            continue
        if got is None:
            unreadable.append(name)
        elif got[0] > MAX_STEPS:
            unreadable.append(f"{name} (step {got[0]} is past the largest step, {MAX_STEPS})")
        else:
            files.append(CheckpointFile(path, name, got[0], got[1]))
    if unreadable:
        raise ValueError(f"cannot read a step from the name of {_listed(unreadable)} in {folder}; name checkpoint "
                         f"files like {PATTERNS_HELP}, or list them with their steps in a manifest.json")
    return files


def _check_unique_steps(files: list[CheckpointFile]) -> None:
    by_step: dict[int, list[str]] = {}
    for f in files:
        by_step.setdefault(f.step, []).append(f.name)
    clashes = [f"step {step}: {', '.join(names)}" for step, names in sorted(by_step.items()) if len(names) > 1]
    if clashes:
        raise ValueError(f"more than one checkpoint file has the same step ({_listed(clashes, quote=False)}); "
                         "one run has one checkpoint per step: move the extra files out, or list the ones to "
                         "import in a manifest.json")


def _listed(items: list[str], quote: bool = True, limit: int = 8) -> str:
    shown = [repr(i) if quote else i for i in items[:limit]]
    return ", ".join(shown) + (f" and {len(items) - limit} more" if len(items) > limit else "")


# -- manifest --------------------------------------------------------------------------------------


def read_side_json(path: Path, what: str):
    """A small JSON file (a manifest, a trial's params.json), size-checked before it is read."""
    check_file_size(path, MAX_IMPORT_SIDE_FILE_BYTES, what,
                    fix="the limit is engine.bounds.MAX_IMPORT_SIDE_FILE_BYTES")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except RecursionError:
        doc = None
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"{what} {path} is not valid JSON: {exc}") from None
    if doc is None or _too_deep(doc):
        raise ValueError(f"{what} {path} nests lists or objects more than {MAX_SIDE_JSON_DEPTH} levels deep; "
                         "it holds a flat list of checkpoints or of hyperparameters")
    return doc


MAX_SIDE_JSON_DEPTH = 16  # as an ArchSpec's kwargs (engine.config)


def _too_deep(doc) -> bool:
    """Whether ``doc`` nests deeper than :data:`MAX_SIDE_JSON_DEPTH` (walked without recursion)."""
    stack = [(doc, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict | list):
            if depth >= MAX_SIDE_JSON_DEPTH:
                return True
            stack.extend((v, depth + 1) for v in (value.values() if isinstance(value, dict) else value))
    return False


def read_manifest(path: str | Path, folder: Path) -> list[CheckpointFile]:
    """The checkpoints a manifest lists (format in the module docstring); files must lie inside ``folder``."""
    path = Path(path)
    doc = read_side_json(path, "manifest")
    entries = doc.get("checkpoints") if isinstance(doc, dict) else doc
    if not isinstance(entries, list):
        raise ValueError(f"manifest {path} must be a JSON list of checkpoints or an object with a 'checkpoints' "
                         f"list; got {short_repr(doc)}")
    if len(entries) > MAX_CHECKPOINTS:
        raise ValueError(f"manifest {path} lists {len(entries)} checkpoints; one run may have at most "
                         f"{MAX_CHECKPOINTS} (engine.bounds.MAX_CHECKPOINTS)")
    return [_manifest_entry(e, i, path, folder.resolve()) for i, e in enumerate(entries)]


def _manifest_entry(entry, i: int, manifest: Path, root: Path) -> CheckpointFile:
    where = f"manifest {manifest}, checkpoint {i}"
    if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
        raise ValueError(f"{where}: each checkpoint is an object with a 'file' (text); got {short_repr(entry)}")
    unknown = set(entry) - {"file", "step", "epoch", "metrics"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; a checkpoint has file, step, epoch and metrics")
    step = entry.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step <= MAX_STEPS:
        raise ValueError(f"{where}: 'step' must be an integer in [0, {MAX_STEPS}]; got {short_repr(step)}")
    epoch = entry.get("epoch")
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int | float)
                              or not math.isfinite(epoch)):
        raise ValueError(f"{where}: 'epoch' must be a finite number; got {short_repr(epoch)}")
    metrics = entry.get("metrics") or {}
    if not isinstance(metrics, dict) or not all(
            isinstance(k, str) and isinstance(v, int | float) and not isinstance(v, bool) for k, v in metrics.items()):
        raise ValueError(f"{where}: 'metrics' must map names to numbers; got {short_repr(metrics)}")
    target = (root / entry["file"]).resolve()
    if not target.is_relative_to(root):
        raise ValueError(f"{where}: file {entry['file']!r} lies outside the imported folder {root}; "
                         "a manifest may only name files inside it")
    if not target.is_file():
        raise ValueError(f"{where}: file {entry['file']!r} does not exist in {root}")
    return CheckpointFile(target, entry["file"], step, None if epoch is None else float(epoch),
                          {k: float(v) for k, v in metrics.items()})
