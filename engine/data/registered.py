"""Data sets registered once by name in a store, and reused by every worker and every user.

``zooscope datasets add NAME --kind imagefolder --path DIR`` (the store's owner, or an admin of
a team server) describes a user data set once: :func:`describe_registration` loads it, records
its shapes, class names, per-channel normalisation (computed on the training split of the
registration's ``seed`` / ``test_size``) and a SHA-256 of every file it reads. The store keeps
that in its ``dataset`` table, and the store's owner mirrors each row as
``<store>/datasets/<NAME>.json`` (written to a temporary name and renamed).

Workers never open the catalog: a process that may load data for a store calls
:func:`use_registered_folder` with that mirror folder (the dispatcher for the server, every
local worker and every Ray task for theirs), and from then on ``DatasetSpec(name=NAME)``
resolves to the recorded kind, path and options through :func:`lookup`, read fresh at each load.
The recorded normalisation is applied as it is, so every run and probe sees the same inputs,
and a file that changed since registration is refused (its hash differs) instead of silently
training on other data.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from engine.bounds import short_repr
from engine.config import DatasetSpec
from engine.data.dataset import Dataset, DatasetError
from engine.data.images import content_sha256

__all__ = [
    "REGISTERED_KINDS",
    "describe_registration",
    "lookup",
    "registered_info",
    "registered_names",
    "resolve",
    "use_registered_folder",
]

REGISTERED_KINDS = ("imagefolder", "images", "npz", "csv", "parquet")  # the file data sets a name can stand for
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_FOLDERS: list[Path] = []


def check_registration_name(name: str, taken: Callable[[str], bool]) -> str:
    """``name`` if it can name a registered data set: 1-64 of ``A-Z a-z 0-9 _ . -``, not a built-in."""
    if not isinstance(name, str) or not _NAME.match(name) or name.endswith(".json"):
        raise DatasetError(f"a registered data set's name is 1-64 letters, digits, '_', '.' or '-', starting with a "
                           f"letter or digit; got {short_repr(name)}")
    if taken(name):
        raise DatasetError(f"{name!r} is a built-in data set; register yours under another name")
    return name


def use_registered_folder(folder: str | os.PathLike[str] | None) -> None:
    """Resolve registered names from the mirror files in ``folder`` (``<store>/datasets``) in this process.

    One store's names at a time: the store this process serves or works for (the last call
    wins; None forgets them).
    """
    _FOLDERS[:] = [] if folder is None else [Path(folder).absolute()]


def _mirror_file(folder: Path, name: str) -> Path:
    return folder / f"{name}.json"


def lookup(name: str) -> dict[str, Any] | None:
    """The registered entry ``{"name", "spec", "info", "owner", "created_at"}`` for ``name``, or None."""
    if not isinstance(name, str) or not _NAME.match(name):
        return None
    for folder in _FOLDERS:
        f = _mirror_file(folder, name)
        if f.is_file():
            try:
                return json.loads(f.read_text())
            except (OSError, ValueError) as exc:
                raise DatasetError(f"registered data set {name!r}: {f} is unreadable ({exc}); register it again "
                                   "with `zooscope datasets add`") from None
    return None


def registered_info(name: str) -> dict[str, Any] | None:
    """What was recorded about registered data set ``name`` (task, shapes, classes, ...), or None."""
    entry = lookup(name)
    return None if entry is None else dict(entry.get("info") or {})


def registered_names() -> list[str]:
    """Names registered in the folders this process uses."""
    names = set()
    for folder in _FOLDERS:
        if folder.is_dir():
            names |= {p.stem for p in folder.glob("*.json") if _NAME.match(p.stem)}
    return sorted(names)


def source_spec(name: str, spec: Mapping[str, Any], run: DatasetSpec | None = None) -> DatasetSpec:
    """The file data set's spec behind a registration, with a run's seed / split / corruption knobs."""
    base = {"name": spec["kind"], "path": spec["path"], "label": spec.get("label"), "options": spec.get("options", {}),
            "seed": spec.get("seed", 0), "test_size": spec.get("test_size", 0.25)}
    if run is not None:
        base.update(seed=run.seed, test_size=run.test_size)
    return DatasetSpec.model_validate(base)


def resolve(name: str, run: DatasetSpec) -> tuple[DatasetSpec, tuple[tuple[float, ...], tuple[float, ...]] | None]:
    """``(file spec, recorded normalisation)`` of registered data set ``name`` for a run's ``DatasetSpec``.

    Raises :class:`DatasetError` when it is no longer registered or its files changed since
    (their SHA-256 differs from the recorded one).
    """
    entry = lookup(name)
    if entry is None:
        raise DatasetError(f"data set {name!r} is no longer registered; see `zooscope datasets ls`")
    spec, info = entry["spec"], entry["info"]
    sha, _, _ = content_sha256(spec["path"], spec["kind"])
    if sha != info.get("sha256"):
        raise DatasetError(f"registered data set {name!r}: the files under {spec['path']} changed since it was "
                           f"registered (content hash {sha[:12]} != {str(info.get('sha256'))[:12]}); register it "
                           f"again with `zooscope datasets add {name} --replace ...` (runs trained on the old files "
                           "cannot be reproduced from the new ones)")
    norm = info.get("normalization")
    return source_spec(name, spec, run), (tuple(norm["mean"]), tuple(norm["std"])) if norm else None


def describe_registration(name: str, kind: str, path: str, *, label: str | None = None,
                          options: Mapping[str, Any] | None = None, test_size: float = 0.25, seed: int = 0,
                          load: Callable[[DatasetSpec], Dataset], taken: Callable[[str], bool]
                          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(spec, info)`` of a data set to register: it is loaded once here, so a bad folder or
    file is refused now, with the loaders' own messages.

    ``spec`` is what to load (``kind``, absolute ``path``, ``label``, ``options``, ``seed``,
    ``test_size``); ``info`` what was found (``task``, ``input_shape``, ``n_outputs``,
    ``class_names``, ``n_train``/``n_test``, ``normalization``, ``sha256``, ``n_files``, ``bytes``).
    """
    check_registration_name(name, taken)
    if kind not in REGISTERED_KINDS:
        raise DatasetError(f"kind must be one of {', '.join(REGISTERED_KINDS)}; got {short_repr(kind)}")
    resolved = Path(path).expanduser().absolute()
    spec = {"kind": kind, "path": str(resolved), "label": label, "options": dict(options or {}),
            "seed": int(seed), "test_size": float(test_size)}
    ds = load(source_spec(name, spec))
    sha, n_files, n_bytes = content_sha256(resolved, kind)
    info = {"task": ds.task, "input_shape": list(ds.input_shape), "n_outputs": ds.n_outputs,
            "class_names": list(ds.class_names), "n_train": ds.n_train, "n_test": ds.n_test,
            "normalization": ds.normalization, "sha256": sha, "n_files": n_files, "bytes": n_bytes,
            "describe": ds.describe().replace(f"{kind}:", f"{name}:", 1)}
    return spec, info
