"""Create a zoo (form or sweep file) and import checkpoints; errors appear next to their fields."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import streamlit as st
from pydantic import ValidationError

from engine import data as zdata
from engine import nets
from engine.auth import PermissionDenied
from engine.bounds import MAX_SWEEP_FILE_BYTES, short_repr
from engine.config import SWEEP_AXES, ConfigError, SweepSpec, load_sweep
from engine.train import check_registered

from .services import Services, current_user, may
from .text import literal

__all__ = ["create_zoo_form", "import_form"]

GRID_AXES = ["width", "depth", "lr", "batch_size", "weight_decay", "train_fraction", "label_noise", "init_scale",
             "seed"]


def _parse_list(text: str) -> list:
    out = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        try:
            out.append(int(part))
        except ValueError:
            try:
                out.append(float(part))
            except ValueError:
                out.append(part)
    return out


def _field_errors(exc: ValidationError) -> dict[str, str]:
    """Validation messages keyed by the form field they are about (``"form"`` when none fits)."""
    errors = {}
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        msg = err["msg"].removeprefix("Value error, ")
        if loc and loc[0] == "grid":
            key = loc[1] if len(loc) > 1 else _grid_axis(msg)
        elif not loc:  # a whole-sweep check, e.g. an invalid grid point
            key = _grid_axis(msg)
        else:
            key = loc[-1]
        value = err.get("input")
        if not isinstance(value, dict) and short_repr(value) not in msg:
            msg = f"{msg} (got {short_repr(value)})"
        errors[key] = msg
    return errors


_AXIS_OF_FIELD = {".".join(p for p in path if p): axis for axis, path in SWEEP_AXES.items()}


def _grid_axis(msg: str) -> str:
    """The grid field a sweep-level message is about, so it can sit under that field."""
    named = re.search(r"sweep axis '(\w+)'", msg)
    if named and named.group(1) in GRID_AXES:
        return named.group(1)
    field = re.search(r"is invalid: ([\w.]+):", msg)  # "grid point (...) is invalid: arch.width: ..."
    axis = _AXIS_OF_FIELD.get(field.group(1)) if field else None
    return axis if axis in GRID_AXES else "grid"


def _error(errors: dict[str, str], *keys: str, container=st) -> None:
    for k in keys:
        if k in errors:
            container.error(literal(errors[k], limit=2000), icon="⚠️")


def create_zoo_form(svc: Services) -> None:
    errors = st.session_state.get("zoo_form_errors", {})
    with st.form("create_zoo", border=True):
        c1, c2, c3 = st.columns(3)
        name = c1.text_input("Zoo name", value="my-zoo", key="f_name")
        _error(errors, "name", container=c1)
        dataset = c2.selectbox("Dataset", sorted(zdata.available()), key="f_dataset",
                               index=sorted(zdata.available()).index("mnist1d"))
        arch = c3.selectbox("Architecture", sorted(nets.available()), key="f_arch",
                            index=sorted(nets.available()).index("mlp"))
        c1, c2, c3, c4 = st.columns(4)
        steps = c1.number_input("Steps", value=1000, step=100, key="f_steps")
        _error(errors, "steps", container=c1)
        batch = c2.number_input("Batch size", value=100, step=10, key="f_batch")
        _error(errors, "batch_size", container=c2)
        optim = c3.selectbox("Optimizer", ["sgd", "momentum", "adamw"], index=1, key="f_optim")
        ckpt = c4.text_input("Checkpoints", value="log:6", key="f_ckpt", help="linear:N, log:N or 10,100,500")
        _error(errors, "checkpoints", container=c4)
        st.markdown("**Grid** — comma-separated values; leave empty to keep the base value")
        cols = st.columns(3)
        grid_text = {}
        defaults = {"width": "32, 64", "lr": "0.01, 0.05", "seed": "0, 1, 2"}
        for i, axis in enumerate(GRID_AXES):
            with cols[i % 3]:
                grid_text[axis] = st.text_input(axis, value=defaults.get(axis, ""), key=f"f_grid_{axis}")
                _error(errors, axis)
        _error(errors, "grid", "form")
        upload = st.file_uploader("…or upload a sweep file (TOML/YAML)", type=["toml", "yaml", "yml"],
                                  key="f_upload")
        c1, c2 = st.columns(2)
        preview = c1.form_submit_button("Preview")
        submit = c2.form_submit_button("Queue training", type="primary", disabled=not may("launch"),
                                       help=None if may("launch") else "Training needs the editor role")
    if not (preview or submit):
        return
    with nets.factory_checks_reused():  # a factory _validate checked is not checked again by submit_sweep
        sweep = _validate(name, dataset, arch, steps, batch, optim, ckpt, grid_text, upload)
        if sweep is None:
            st.rerun()
        st.session_state["zoo_form_errors"] = {}
        total = sweep.n_runs * sweep.base.steps * sweep.base.batch_size
        st.info(f"**{sweep.n_runs} runs** · {total:,} sample-steps in all · trained as populations of runs that "
                "share architecture and batch size.")
        if submit:
            try:
                zoo_id, job_id = svc.dispatcher.submit_sweep(sweep, owner=current_user())
            except PermissionDenied as exc:
                st.error(literal(exc))
                return
            st.session_state["zoo"] = zoo_id
            st.query_params["zoo"] = zoo_id
            st.success(f"Queued zoo {literal(repr(sweep.name))} ({sweep.n_runs} runs) as job {literal(job_id)}.")
            st.rerun()


def _validate(name, dataset, arch, steps, batch, optim, ckpt, grid_text, upload) -> SweepSpec | None:
    if upload is not None:
        if upload.size > MAX_SWEEP_FILE_BYTES:
            st.session_state["zoo_form_errors"] = {"form": f"{short_repr(upload.name)} is {upload.size:,} bytes; a "
                                                           f"sweep file may hold at most {MAX_SWEEP_FILE_BYTES:,}"}
            return None
        suffix = Path(upload.name).suffix
        with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as fh:
            fh.write(upload.getvalue())
        try:
            sweep = load_sweep(fh.name)
            check_registered(sweep)
            return sweep
        except ConfigError as exc:
            st.session_state["zoo_form_errors"] = {"form": str(exc).replace(fh.name, upload.name)}
            return None
        finally:
            Path(fh.name).unlink(missing_ok=True)
    checkpoints = _parse_list(ckpt) if "," in ckpt else ckpt.strip()
    data = {
        "name": name,
        "base": {"dataset": {"name": dataset}, "arch": {"name": arch}, "optim": {"name": optim},
                 "steps": int(steps), "batch_size": int(batch), "checkpoints": checkpoints},
        "grid": {k: _parse_list(v) for k, v in grid_text.items() if v.strip()},
    }
    try:
        sweep = SweepSpec.model_validate(data)
        check_registered(sweep)
        return sweep
    except ValidationError as exc:
        st.session_state["zoo_form_errors"] = _field_errors(exc)
        return None
    except ValueError as exc:
        st.session_state["zoo_form_errors"] = {"form": str(exc)}
        return None


def import_form(svc: Services) -> None:
    from engine.config import ArchSpec, DatasetSpec
    from engine.importer import import_weights, record_import

    if not may("import"):
        st.info("Importing checkpoints needs the editor role (ask an admin).")
        return
    with st.form("import_ckpt"):
        upload = st.file_uploader("Weights (.safetensors)", type=["safetensors"], key="imp_file")
        c1, c2, c3, c4 = st.columns(4)
        arch = c1.selectbox("Architecture", sorted(nets.available()), key="imp_arch")
        width = c2.number_input("Width", value=64, min_value=1, key="imp_width")
        depth = c3.number_input("Depth", value=2, min_value=1, key="imp_depth")
        dataset = c4.selectbox("Dataset", sorted(zdata.available()), key="imp_dataset",
                               index=sorted(zdata.available()).index("mnist1d"))
        zoo = st.text_input("Into zoo", value="imported", key="imp_zoo")
        ok = st.form_submit_button("Import")
    if not ok:
        return
    if upload is None:
        st.error("Choose a .safetensors file first.")
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(upload.name).name
        path.write_bytes(upload.getvalue())
        try:
            imported = import_weights(path, ArchSpec(name=arch, width=int(width), depth=int(depth)),
                                      DatasetSpec(name=dataset))
        except ValueError as exc:
            st.error(f"Nothing was imported: {literal(exc, limit=2000)}")
            return
    try:
        run_id = record_import(svc.store, zoo, imported, name=Path(upload.name).stem, owner=current_user(),
                               access=svc.access)
    except (PermissionDenied, ValueError) as exc:  # ValueError: a zoo or run name that is not a usable name
        st.error(literal(exc))
        return
    svc.dispatcher.generation += 1
    st.success(f"Imported as run {literal(run_id)} (test accuracy {imported.metrics['test_acc']:.3f}).")
