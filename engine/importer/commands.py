"""``zooscope import-run`` and ``zooscope import-zoo``: what already exists, imported whole or not at all."""

from __future__ import annotations

import json
from pathlib import Path

from engine.bounds import check_name, printable, short_repr
from engine.config import ArchSpec, DatasetSpec

from .folder import discover_checkpoints
from .metrics_file import read_metrics
from .modelzoo import check_modelzoo
from .trajectory import Trajectory, build_for, check_trajectory, hand_over_runs, record_runs, write_trajectory

__all__ = ["METRICS_FILES", "arch_from_args", "import_run_command", "import_zoo_command"]

METRICS_FILES = ("metrics.csv", "metrics.jsonl", "metrics.json")  # looked for in an imported folder


def _json_object(text: str, flag: str) -> dict:
    try:
        value = json.loads(text)
    except RecursionError:
        raise ValueError(f"{flag} nests lists or objects too deeply; got {short_repr(text)}") from None
    except ValueError as exc:
        raise ValueError(f"{flag} must be a JSON object; got {short_repr(text)} ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag} must be a JSON object; got {short_repr(value)}")
    return value


def arch_from_args(args) -> ArchSpec:
    """The architecture the command line names: ``--factory`` (+ ``--kwargs``), or ``--arch`` and its knobs."""
    if args.factory:
        label = args.arch or args.factory.rsplit(":", 1)[-1]
        return ArchSpec(name=label, width=args.width, depth=args.depth, factory=args.factory,
                        kwargs=_json_object(args.kwargs, "--kwargs"), output=args.output)
    if not args.arch:
        raise ValueError("name what builds the model: --arch NAME (a built-in: mlp, cnn1d, cnn2d, resnet, transformer) "
                         "or --factory module:callable --kwargs JSON")
    return ArchSpec(name=args.arch, width=args.width, depth=args.depth, options=_json_object(args.options, "--options"))


def _hparams(arch: ArchSpec) -> dict:
    if arch.factory:
        return {"arch": arch.factory, "kwargs": dict(arch.kwargs)}
    return {"arch": arch.name, "width": arch.width, "depth": arch.depth, **dict(arch.options)}


def _metrics_path(args, folder: Path) -> Path | None:
    if args.metrics:
        return Path(args.metrics)
    return next((folder / n for n in METRICS_FILES if (folder / n).is_file()), None)


def _settings_in_force(path: Path, owner: str):
    """The store's settings applied: ``[plugins]`` (a factory may come from there) and the access policy,
    checked for ``owner`` before anything is read."""
    from engine.auth import cli_policy
    from engine.data import use_registered_folder
    from engine.settings import apply_plugins, load_settings
    from store.paths import StoreLayout

    settings = load_settings(path)
    apply_plugins(settings)
    use_registered_folder(StoreLayout(Path(path).absolute()).datasets)  # --dataset may name a registered set
    access = cli_policy(settings, path)
    if access is not None:
        access.require(owner, "import")
    return access


def import_run_command(args, path: Path) -> int:
    """``zooscope import-run``: a folder of checkpoints (and logged metrics) as one run."""
    access = _settings_in_force(path, args.owner)
    folder = Path(args.folder)
    zoo = check_name(args.zoo, "zoo name")
    name = check_name(args.name or folder.resolve().name, "run name")
    arch, dataset = arch_from_args(args), DatasetSpec(name=args.dataset)
    files = discover_checkpoints(folder, args.manifest)
    metrics = _metrics_path(args, folder)
    table = read_metrics(metrics) if metrics is not None else None
    ds, model = build_for(arch, dataset)
    tr = check_trajectory(name, files, arch, dataset, source=folder, table=table, hparams=_hparams(arch),
                          model=model)
    return _write_and_record(path, zoo, [tr], owner=args.owner, access=access, ds=ds, model=model, new_zoo=False)


def import_zoo_command(args, path: Path) -> int:
    """``zooscope import-zoo``: every trial of a model zoo as a run of one new zoo."""
    access = _settings_in_force(path, args.owner)
    folder = Path(args.folder)
    zoo = check_name(args.zoo or folder.resolve().name, "zoo name")
    arch, dataset = arch_from_args(args), DatasetSpec(name=args.dataset)
    trajectories = check_modelzoo(folder, arch, dataset)
    ds, model = build_for(arch, dataset)
    return _write_and_record(path, zoo, trajectories, owner=args.owner, access=access, ds=ds, model=model,
                             new_zoo=True)


def _write_and_record(path: Path, zoo: str, trajectories: list[Trajectory], *, owner: str, access, ds, model,
                      new_zoo: bool) -> int:
    import store

    try:
        st = store.open_store(path)
    except store.StoreBusyError as busy:
        runs = [write_trajectory(tr, path, ds=ds, model=model) for tr in trajectories]
        req = hand_over_runs(path, zoo, runs, owner=owner, new_zoo=new_zoo)
        print(f"{busy}\nYour import ({len(runs)} run(s), {sum(len(r.checkpoints) for r in runs)} checkpoints) was "
              f"handed to that process instead ({req.name}); it appears in zoo {printable(zoo)!r} once that process "
              "takes the request (within a second while it runs). If it refuses, its log says why.")
        return 0
    with st:
        if new_zoo:
            _refuse_existing_zoo(st, zoo)
        runs = [write_trajectory(tr, st.path, ds=ds, model=model) for tr in trajectories]
        run_ids = record_runs(st, zoo, runs, owner=owner, access=access, new_zoo=new_zoo)
    for tr, run, run_id in zip(trajectories, runs, run_ids):
        _print_summary(tr, run, run_id, zoo)
    return 0


def _refuse_existing_zoo(st, zoo: str) -> None:
    import store

    try:
        st.get_zoo(zoo)
    except store.NotFoundError:
        return
    raise ValueError(f"a zoo named {zoo!r} exists already in {st.path}; import into a new zoo with --zoo NAME")


def _print_summary(tr: Trajectory, run, run_id: str, zoo: str) -> None:
    steps = [c.step for c in run.checkpoints]
    last = run.checkpoints[-1].metrics
    print(f"imported {len(steps)} checkpoints (steps {steps[0]}..{steps[-1]}) and {len(run.metrics)} metric values "
          f"from {printable(tr.source)} as run {run_id} ({printable(run.name)!r}) in zoo {printable(zoo)!r}: "
          f"test accuracy at the last checkpoint {last['test_acc']:.4f}")
    if tr.table is not None and tr.table.skipped_columns:
        print(f"  columns without numbers, not imported: {', '.join(map(repr, tr.table.skipped_columns[:10]))}")
