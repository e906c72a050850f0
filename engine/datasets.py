"""``zooscope datasets``: register a user data set in a store once by name, and list them.

``add NAME --kind imagefolder --path DIR [--label COL] [--option key=value ...]`` loads the
data once (every check of :mod:`engine.data` runs here, so a corrupt image or an oversized
file is refused before anything is written), records its spec and what was found (shapes,
class names, per-channel normalisation, a SHA-256 of the files) in the store's ``dataset``
table, and the owner mirrors it to ``<store>/datasets/NAME.json`` for workers. From then on a
sweep's ``[base.dataset] name = "NAME"`` trains on it, in local workers and Ray tasks alike.

A path is file access on the server machine, so registering needs the role ``admin`` when
sign-in is on (the action ``register_dataset``), and it is a command-line action only: the
dashboard offers no field for a server path. While a dashboard owns the store, the command
hands its request to it through ``requests/`` and the dashboard registers it (loading the
data again itself: a request file is not trusted for what it says the data holds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

__all__ = ["add_datasets_arguments", "datasets_command", "record_dataset_request", "register_dataset"]


def add_datasets_arguments(p) -> None:
    """The ``datasets`` subcommands: ``add``, ``ls``, ``rm``."""
    import os

    sub = p.add_subparsers(dest="datasets_command", required=True)
    add = sub.add_parser("add", help="register a data set under a name (image folder, NPZ/Parquet images, tables)")
    add.add_argument("name", help="the name runs will use, e.g. my-cifar")
    add.add_argument("--kind", required=True, choices=["imagefolder", "images", "npz", "csv", "parquet"])
    add.add_argument("--path", required=True, help="folder (imagefolder) or file on this machine")
    add.add_argument("--label", help="label column (csv, parquet, Parquet images)")
    add.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                     help="a loader option, e.g. layout=nhwc, size=32x32, channels=rgb, normalize=false (repeatable)")
    add.add_argument("--test-size", type=float, default=0.25,
                     help="held-out share for the normalisation statistics when the data have no split of their own")
    add.add_argument("--seed", type=int, default=0, help="split seed for the normalisation statistics")
    add.add_argument("--replace", action="store_true", help="register new files under a name already taken")
    add.add_argument("--owner", default=os.environ.get("USER", "local"))
    sub.add_parser("ls", help="list the registered data sets")
    rm = sub.add_parser("rm", help="forget a registered data set (its runs stay, but cannot load it again)")
    rm.add_argument("name")
    rm.add_argument("--owner", default=os.environ.get("USER", "local"))


def _options(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option takes KEY=VALUE, e.g. layout=nhwc; got {pair!r}")
        try:
            value = json.loads(text)  # numbers and true/false
        except ValueError:
            value = text
        out[key.strip()] = value if isinstance(value, bool | int | float | str) else text
    return out


def register_dataset(st, request: dict[str, Any], *, access=None) -> dict[str, Any]:
    """Load, describe and record one registration (``name, kind, path, label, options, test_size,
    seed, replace, owner``) in an owned store; returns the recorded info."""
    from engine.data import describe_registration

    owner = request.get("owner", "local")
    if access is not None:
        access.require(owner, "register_dataset")
    if not request.get("replace"):
        st.require_free_dataset_name(request["name"])  # before loading anything
    spec, info = describe_registration(request["name"], request["kind"], request["path"], label=request.get("label"),
                                       options=request.get("options") or {},
                                       test_size=request.get("test_size", 0.25), seed=request.get("seed", 0))
    st.put_dataset(request["name"], spec, info, owner=owner, replace=bool(request.get("replace")))
    return info


def record_dataset_request(st, payload: dict[str, Any], *, access=None) -> None:
    """Register a data set handed over by ``zooscope datasets add`` (a ``requests/`` entry)."""
    register_dataset(st, payload, access=access)


def datasets_command(args, path: Path) -> int:
    import store
    from engine.auth import cli_policy
    from engine.data import use_registered_folder
    from engine.settings import load_settings
    from store.paths import StoreLayout

    use_registered_folder(StoreLayout(path).datasets)
    if args.datasets_command == "ls":
        return _ls(path)
    access = cli_policy(load_settings(path), path)
    if args.datasets_command == "rm":
        if access is not None:
            access.require(args.owner, "register_dataset")
        with store.open_store(path) as st:
            st.remove_dataset(args.name)
        print(f"data set {args.name!r} is no longer registered")
        return 0
    request = {"name": args.name, "kind": args.kind, "path": str(Path(args.path).expanduser().absolute()),
               "label": args.label, "options": _options(args.option), "test_size": args.test_size,
               "seed": args.seed, "replace": args.replace, "owner": args.owner}
    if access is not None:
        access.require(args.owner, "register_dataset")
    try:
        st = store.open_store(path)
    except store.StoreBusyError as exc:
        from engine.data import describe_registration

        _, info = describe_registration(request["name"], request["kind"], request["path"], label=request["label"],
                                        options=request["options"], test_size=request["test_size"],
                                        seed=request["seed"])  # refuse bad data here, before handing over
        req = store.drop_request(path, "register_dataset", request)
        print(f"{exc}\nYour registration was handed to that process instead ({req.name}): {info['describe']}")
        return 0
    with st:
        info = register_dataset(st, request, access=access)
    print(f"registered {info['describe']}; sha256 {info['sha256'][:12]}, {info['n_files']} file(s)")
    if info.get("normalization"):
        n = info["normalization"]
        print("per-channel normalisation: mean " + ", ".join(f"{v:.4f}" for v in n["mean"])
              + "; std " + ", ".join(f"{v:.4f}" for v in n["std"]))
    return 0


def _ls(path: Path) -> int:
    """From the catalog when it can be read, else from the owner's mirror folder."""
    import store
    from engine.bounds import printable
    from store.paths import StoreLayout

    try:
        with store.open_store(path, owner=False) as st:
            rows = [st.get_dataset(n) for n in st.list_datasets()["name"]]
    except store.StoreBusyError:
        folder = StoreLayout(path).datasets
        rows = [json.loads(f.read_text()) for f in sorted(folder.glob("*.json"))] if folder.is_dir() else []
    if not rows:
        print("(no registered data sets; add one with `zooscope datasets add NAME --kind imagefolder --path DIR`)")
        return 0
    for r in rows:
        spec, info = r["spec"], r["info"]
        print(f"{printable(r['name'])}\t{spec['kind']}\t{printable(spec['path'])}\t"
              f"{printable(info.get('describe', ''))}\towner {printable(r.get('owner'))}")
    return 0
