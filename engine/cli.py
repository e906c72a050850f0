"""The ``zooscope`` command: serve, train, ls, import, import-run, import-zoo, export-parquet, report, users,
datasets."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
from pathlib import Path

import store
from engine.config import ConfigError, load_sweep

__all__ = ["main"]

def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="zooscope", description="Visual analytics for model zoos.")
    p.add_argument("--store", help="store folder (default: $ZOOSCOPE_STORE or ./zoo-store)")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="start the dashboard")
    s.add_argument("--port", type=int, default=8501)
    s.add_argument("--address", default="localhost")
    s.add_argument("--team", action="store_true",
                   help="shared deployment: sign-in required (also implied by a non-loopback --address)")

    t = sub.add_parser("train", help="train a zoo from a TOML/YAML sweep file")
    t.add_argument("config", help="sweep file, e.g. configs/demo.toml")
    t.add_argument("--sequential", action="store_true", help="train runs one by one instead of as populations")
    t.add_argument("--owner", default=os.environ.get("USER", "local"))

    ls = sub.add_parser("ls", help="list zoos, runs or checkpoints")
    ls.add_argument("what", nargs="?", default="zoos", choices=["zoos", "runs", "checkpoints", "jobs"])
    ls.add_argument("--zoo", help="zoo name or id (runs/checkpoints)")

    im = sub.add_parser("import", help="import weights as a checkpoint (safetensors, or torch weights_only)")
    im.add_argument("weights")
    im.add_argument("--arch", required=True, help="architecture name, e.g. mlp")
    im.add_argument("--width", type=int, default=64)
    im.add_argument("--depth", type=int, default=2)
    im.add_argument("--dataset", default="mnist1d", help="dataset the weights were trained on")
    im.add_argument("--zoo", default="imported", help="zoo to add the run to")
    im.add_argument("--name", help="run name (default: the file name)")
    im.add_argument("--owner", default=os.environ.get("USER", "local"))

    ir = sub.add_parser("import-run", help="import a folder of checkpoints (and logged metrics) as one run with "
                                           "its whole trajectory")
    ir.add_argument("folder", help="folder of checkpoint files named like step_500.safetensors, ckpt-1200.pt, "
                                   "epoch_3.pt (see docs/importing.md)")
    _model_arguments(ir)
    ir.add_argument("--zoo", default="imported", help="zoo to add the run to (created if new)")
    ir.add_argument("--name", help="run name (default: the folder's name)")
    ir.add_argument("--manifest", help="JSON listing each checkpoint's file, step, epoch, metrics "
                                       "(default: FOLDER/manifest.json if present)")
    ir.add_argument("--metrics", help="CSV or JSON-lines file of logged metrics with a 'step' column "
                                      "(default: FOLDER/metrics.csv, metrics.jsonl or metrics.json if present)")

    iz = sub.add_parser("import-zoo", help="import a published model zoo (one trial folder per model) as a new zoo")
    iz.add_argument("folder", help="the zoo's folder: one trial folder per model")
    iz.add_argument("--format", required=True, choices=["modelzoo"],
                    help="modelzoo: the Ray Tune layout of the model zoos of Schürholt et al. (2022)")
    _model_arguments(iz)
    iz.add_argument("--zoo", help="name of the new zoo (default: the folder's name)")

    ex = sub.add_parser("export-parquet", help="export every catalog table as Parquet")
    ex.add_argument("dir")

    from engine.accounts import add_users_arguments
    from engine.report import add_report_arguments

    add_users_arguments(sub.add_parser("users", help="manage the accounts of a team server (add, passwd, "
                                                     "set-role, rm, ls)"))

    from engine.datasets import add_datasets_arguments

    add_datasets_arguments(sub.add_parser("datasets", help="register a data set (image folder, NPZ/Parquet images, "
                                                           "tables) in the store by name (add, ls, rm)"))

    add_report_arguments(sub.add_parser("report", help="export a report draft or a stored report as one offline "
                                                       "HTML file"))
    return p


def _model_arguments(p: argparse.ArgumentParser) -> None:
    """What builds the imported models (a built-in, or the user's factory), and the data to evaluate them on."""
    g = p.add_argument_group("what builds the model: a built-in architecture, or your factory")
    g.add_argument("--arch", help="built-in architecture (mlp, cnn1d, cnn2d, resnet, transformer); a label with "
                                  "--factory")
    g.add_argument("--width", type=int, default=64)
    g.add_argument("--depth", type=int, default=2)
    g.add_argument("--options", default="{}", help='architecture options, a JSON object: \'{"batchnorm": true}\'')
    g.add_argument("--factory", help="module:callable returning the nn.Module, e.g. my_models:WideNet")
    g.add_argument("--kwargs", default="{}", help="keyword arguments of --factory, a JSON object")
    g.add_argument("--output", help="with --factory: how to get logits from forward's result ('logits' or '0')")
    p.add_argument("--dataset", required=True, help="dataset the models were trained on; every checkpoint is "
                                                    "evaluated on it")
    p.add_argument("--owner", default=os.environ.get("USER", "local"))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    path = store.resolve_store_path(args.store)
    try:
        status = _COMMANDS[args.command](args, path)
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's exit
        return status
    except BrokenPipeError:
        return _reader_went_away()
    except (ConfigError, ValueError, PermissionError, store.StoreError) as exc:
        print(f"zooscope: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("zooscope: interrupted", file=sys.stderr)
        return 130


def _reader_went_away() -> int:
    """The program reading our output stopped (``zooscope ls | head``): end quietly, as Unix tools do.

    Whatever is left in stdout's buffer goes to /dev/null, so Python's exit does not
    report the broken pipe again; the status is the shell's for a SIGPIPE death.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    return 128 + signal.SIGPIPE


def _serve(args, path: Path) -> int:
    from engine.auth import oidc_configured, resolve_auth_mode

    mode = resolve_auth_mode(_settings(path).auth.mode, address=args.address, team=args.team,
                             oidc=oidc_configured())
    problem = _sign_in_problem(mode, path)
    if problem:
        print(f"zooscope: error: {problem}", file=sys.stderr)
        return 2
    env = {**os.environ, "ZOOSCOPE_STORE": str(path), "ZOOSCOPE_TEAM": "1" if args.team else "",
           "ZOOSCOPE_AUTH": mode, "ZOOSCOPE_WARM_UMAP": os.environ.get("ZOOSCOPE_WARM_UMAP", "1")}
    if mode != "off":
        print(f"sign-in is on ({mode}); accounts: `zooscope users ls`", file=sys.stderr)
    cmd = [sys.executable, "-m", "engine.serve", "--server.port", str(args.port),
           "--server.address", args.address, "--server.headless", "true"]
    return subprocess.call(cmd, env=env)


def _settings(path: Path):
    from engine.settings import load_settings

    return load_settings(path)


def _sign_in_problem(mode: str, path: Path) -> str | None:
    """Why a server with sign-in ``mode`` could not let anyone in, or None."""
    from engine.auth import load_users, oidc_configured, secrets_files, users_path

    if mode == "oidc" and not oidc_configured():
        return ("auth mode 'oidc' needs an [auth] section (your identity provider) in "
                f"{' or '.join(str(f) for f in secrets_files())}; see docs/deploy.md")
    if mode == "password":
        users_file = users_path(_settings(path), path)
        if not any(u.password for u in load_users(users_file).values()):
            return (f"sign-in is on with built-in passwords (a team server, or a non-loopback address) but "
                    f"{users_file} has no account with "
                    "a password, so nobody could sign in. Add one first: "
                    f"`zooscope --store {path} users add NAME --role admin`, or configure OIDC "
                    "(an [auth] section in .streamlit/secrets.toml); see docs/deploy.md")
    return None


def _train(args, path: Path) -> int:
    from engine.nets import factory_checks_reused

    sweep = load_sweep(args.config)  # validate before touching the store
    with factory_checks_reused():  # one bounded factory check for this submission (checked, then queued)
        return _train_sweep(args, path, sweep)


def _train_sweep(args, path: Path, sweep) -> int:
    from engine.data import use_registered_folder
    from engine.jobs import Dispatcher
    from engine.settings import apply_plugins
    from engine.train import check_registered
    from store.paths import StoreLayout

    apply_plugins(_settings(path))  # a factory may come from [plugins] paths
    use_registered_folder(StoreLayout(path).datasets)  # data sets registered in this store count
    check_registered(sweep)
    try:
        st = store.open_store(path)
    except store.StoreBusyError as exc:
        payload = {"sweep": sweep.model_dump(mode="json"), "owner": args.owner}
        req = store.drop_request(path, "train_sweep", payload)
        print(f"{exc}\nYour request was handed to that process instead ({req.name}); "
              "follow it in the dashboard.")
        return 0
    from engine.auth import cli_policy

    with st:
        settings = _settings(path)
        disp = Dispatcher(st, access=cli_policy(settings, path), settings=settings)
        zoo_id, job_id = disp.submit_sweep(sweep, owner=args.owner, population=not args.sequential)
        print(f"zoo {sweep.name!r} ({zoo_id}): {sweep.n_runs} runs queued as job {job_id}")
        job = _follow(disp, job_id)
        _print_table(st.runs_table(zoo_id), _RUN_COLUMNS)
        if job["status"] != "done":
            print(f"job {job_id} {job['status']}: {job.get('error') or ''}", file=sys.stderr)
            return 1
    return 0


def _follow(disp, job_id: str) -> dict:
    """Tick the dispatcher until the job ends, showing progress; Ctrl-C cancels the job.

    A terminal gets a progress bar; a log (CI, a pipe) gets a line every 10%.
    """
    from tqdm import tqdm

    tty = sys.stderr.isatty()
    bar = tqdm(total=1000, bar_format="{l_bar}{bar}| {elapsed}<{remaining} {postfix}", disable=not tty,
               mininterval=0.5)
    last_decile = [-1]

    def update(jobs: list[dict]) -> None:
        job = jobs[0]
        progress = float(job.get("progress") or 0.0)
        message = (job.get("message") or "")[:70]
        if tty:
            bar.n = int(1000 * progress)
            bar.set_postfix_str(message, refresh=False)
            bar.refresh()
        elif int(progress * 10) > last_decile[0]:
            last_decile[0] = int(progress * 10)
            print(f"[{progress:4.0%}] {message}", file=sys.stderr, flush=True)

    try:
        job = disp.run_until_done([job_id], on_tick=update)[0]
    except KeyboardInterrupt:
        disp.cancel(job_id)
        job = disp.run_until_done([job_id])[0]
    bar.close()
    return job


_RUN_COLUMNS = ["name", "status", "final_test_acc", "final_train_acc", "final_test_loss", "steps", "wall_s"]


def _print_table(df, preferred: list[str]) -> None:
    """Print catalog rows; text cells with non-printable characters (ESC, NUL, U+202E) are escaped
    and long ones cut, since rows written before names were checked may hold them."""
    from engine.bounds import printable

    if df.empty:
        print("(nothing yet)")
        return
    hp = [c for c in df.columns if c.startswith("hp_")]
    cols = list(dict.fromkeys(c for c in ["run_id", *hp, *preferred] if c in df.columns)) or list(df.columns)
    shown = df[cols].copy()
    for c in shown.columns:
        if shown[c].dtype.kind == "O":  # text (and mixed) columns
            shown[c] = shown[c].map(lambda v: printable(v) if isinstance(v, str) else v)
    print(shown.to_string(index=False, float_format=lambda v: f"{v:.4g}"))


def _ls(args, path: Path) -> int:
    with store.open_store(path, owner=False) as st:
        zoo_id = st.get_zoo(args.zoo)["zoo_id"] if args.zoo else None
        if args.what == "zoos":
            _print_table(st.list_zoos(), ["zoo_id", "name", "n_runs", "created_at", "owner"])
        elif args.what == "runs":
            _print_table(st.runs_table(zoo_id), _RUN_COLUMNS)
        elif args.what == "checkpoints":
            _print_table(st.list_checkpoints(zoo_id=zoo_id),
                         ["checkpoint_id", "run_id", "step", "epoch", "train_loss", "test_loss", "test_acc"])
        else:
            _print_table(st.list_jobs(), ["job_id", "kind", "status", "progress", "owner", "created_at", "error"])
    return 0


def _import(args, path: Path) -> int:
    from engine.importer import import_command

    return import_command(args, path)


def _import_run(args, path: Path) -> int:
    from engine.importer import import_run_command

    return import_run_command(args, path)


def _import_zoo(args, path: Path) -> int:
    from engine.importer import import_zoo_command

    return import_zoo_command(args, path)


def _report(args, path: Path) -> int:
    from engine.report import report_command

    return report_command(args, path)


def _users(args, path: Path) -> int:
    from engine.accounts import users_command

    return users_command(args, path)


def _datasets(args, path: Path) -> int:
    from engine.datasets import datasets_command

    return datasets_command(args, path)


def _export(args, path: Path) -> int:
    with store.open_store(path) as st:
        st.export_parquet(Path(args.dir))
    print(f"exported the catalog of {path} to {args.dir}")
    return 0


_COMMANDS = {"serve": _serve, "train": _train, "ls": _ls, "import": _import, "import-run": _import_run,
             "import-zoo": _import_zoo, "export-parquet": _export, "report": _report, "users": _users,
             "datasets": _datasets}

if __name__ == "__main__":
    sys.exit(main())
