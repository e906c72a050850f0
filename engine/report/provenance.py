"""Where a report's figures came from: zoos, runs, checkpoints, probes, software, time, author."""

from __future__ import annotations

import math
import platform
from collections.abc import Iterable
from datetime import date, datetime
from importlib import metadata
from typing import Any

from .model import ReportItem, utc_stamp

__all__ = ["PACKAGES", "collect_provenance", "environment"]

# The packages whose versions decide what a report's numbers are.
PACKAGES = ("torch", "numpy", "scipy", "pandas", "scikit-learn", "umap-learn", "plotly", "duckdb", "pyarrow",
            "pydantic", "safetensors", "streamlit", "kaleido", "markdown-it-py")


def environment() -> dict[str, Any]:
    """Zooscope, Python, platform and package versions (None for a package not installed)."""
    from plotly.offline import get_plotlyjs_version

    import engine

    packages = {}
    for name in PACKAGES:
        try:
            packages[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            packages[name] = None
    packages["plotly.js"] = get_plotlyjs_version()
    return {"zooscope": engine.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "packages": packages}


def collect_provenance(store: Any, items: Iterable[ReportItem], *, author: str | None,
                       now: datetime | None = None) -> dict[str, Any]:
    """The records behind ``items``, read from ``store``, as one JSON-able dict.

    Checkpoints bring their runs, runs bring their zoos. Ids the store no longer knows
    are listed under ``missing`` rather than dropped silently.

    Returns
    -------
    dict
        ``generated_at, author, zooscope_version, store, environment, zoos, runs,
        checkpoints, probes, missing``; runs carry their full ``config`` and ``hparams``,
        zoos their ``sweep``, probes their ``params`` and ``code_version``.
    """
    from store import NotFoundError

    items = list(items)
    missing: dict[str, list[str]] = {"checkpoint": [], "run": [], "zoo": [], "probe": []}

    def fetch(kind: str, ids: Iterable[str], get) -> list[dict[str, Any]]:
        found = []
        for id_ in dict.fromkeys(ids):
            try:
                row = get(id_)
            except NotFoundError:
                row = None
            if row is None:
                missing[kind].append(id_)
            else:
                found.append(_plain(row))
        return found

    checkpoints = fetch("checkpoint", (c for i in items for c in i.checkpoint_ids), store.get_checkpoint)
    run_ids = [c["run_id"] for c in checkpoints] + [r for i in items for r in i.run_ids]
    runs = fetch("run", run_ids, store.get_run)
    zoos = fetch("zoo", (r["zoo_id"] for r in runs if r.get("zoo_id")), store.get_zoo)
    probes = fetch("probe", (k for i in items for k in i.probe_keys), store.get_probe)
    for probe in probes:
        probe.pop("result", None)  # the numbers are in the figure; the request is what reproduces them
    env = environment()
    return {"generated_at": utc_stamp(now), "author": author, "zooscope_version": env["zooscope"],
            "store": str(store.path), "environment": env, "zoos": zoos, "runs": runs, "checkpoints": checkpoints,
            "probes": probes, "missing": {k: v for k, v in missing.items() if v}}


def _plain(value: Any) -> Any:
    """Catalog values as JSON: times as ISO text, NaN as None, numpy scalars as numbers."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
