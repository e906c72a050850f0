"""The phases domain's zoo-wide requests: one probe over every hyperparameter cell (or checkpoint) of a zoo.

A *cell* is the set of finished runs of a zoo that share every swept hyperparameter but the
seed (the *sweep* is the training grid the zoo was made from; this module only probes it).
:func:`probe_phase_cells` asks :class:`~engine.jobs.ProbeService` for one probe per cell
(``sweep.cell`` by default: its seeds' final checkpoints together, so pairwise metrics such as
barriers and CKA can compare them), or per checkpoint for probe kinds that take exactly one.
Every request goes through the service, so a zoo's cells asked twice -- or a cell asked by someone
else -- is computed once: the second call queues nothing and returns the same statuses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import pandas as pd

from .probe_job import ProbeService, ProbeStatus, get_probe_kind

__all__ = ["PhaseCell", "PhaseRequest", "phase_cells", "phase_cells_status", "probe_phase_cells"]

Which = Literal["final", "all"]


@dataclass(frozen=True)
class PhaseCell:
    """The finished runs of one hyperparameter cell and the checkpoints a probe gets from them.

    Attributes
    ----------
    hparams : dict
        The cell's swept values (seed excluded), axis -> value.
    run_ids : tuple of str
        Its runs, by seed.
    checkpoint_ids : tuple of str
        Their final checkpoints (``"final"``), or all of them by run then step (``"all"``).
    """

    hparams: dict[str, Any]
    run_ids: tuple[str, ...]
    checkpoint_ids: tuple[str, ...]

    @property
    def label(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.hparams.items()) or "all runs"


@dataclass(frozen=True)
class PhaseRequest:
    """One probe request over a zoo's cells: the cell it covers, its checkpoints, and where it stands."""

    cell: PhaseCell
    checkpoint_ids: tuple[str, ...]
    status: ProbeStatus


def _hp_columns(runs: pd.DataFrame) -> list[str]:
    return [c for c in runs.columns if c.startswith("hp_") and c != "hp_seed"]


def phase_cells(store, zoo_id: str, *, checkpoints: Which = "final") -> list[PhaseCell]:
    """The zoo's cells with their finished (``done``) runs, in a stable order.

    Raises
    ------
    ValueError
        ``checkpoints`` other than "final" or "all".
    """
    if checkpoints not in ("final", "all"):
        raise ValueError(f"checkpoints must be 'final' or 'all'; got {checkpoints!r}")
    runs = store.runs_table(zoo_id)
    runs = runs[(runs["status"] == "done") & runs["last_checkpoint_id"].notna()]
    if runs.empty:
        return []
    hp = _hp_columns(runs)
    keys = runs[hp].map(str).agg("\x1f".join, axis=1) if hp else pd.Series("", index=runs.index)
    every = store.list_checkpoints(runs["run_id"].tolist()) if checkpoints == "all" else None
    cells = []
    for _, group in runs.assign(_key=keys).groupby("_key", sort=False):
        group = group.sort_values(["seed", "run_id"])
        if every is None:
            ids = tuple(group["last_checkpoint_id"])
        else:
            mine = every[every["run_id"].isin(group["run_id"])].copy()
            mine["_order"] = mine["run_id"].map({r: i for i, r in enumerate(group["run_id"])})
            ids = tuple(mine.sort_values(["_order", "step"])["checkpoint_id"])
        first = group.iloc[0]
        hparams = {c.removeprefix("hp_"): _plain(first[c]) for c in hp}
        cells.append(PhaseCell(hparams, tuple(group["run_id"]), ids))
    return sorted(cells, key=lambda c: json.dumps(c.hparams, sort_keys=True, default=str))


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _service(service_or_dispatcher) -> ProbeService:
    if isinstance(service_or_dispatcher, ProbeService):
        return service_or_dispatcher
    return ProbeService(service_or_dispatcher)


def _requests(cells: list[PhaseCell], probe_kind: str) -> list[tuple[PhaseCell, tuple[str, ...]]]:
    """One request per cell, or per checkpoint for kinds that take exactly one checkpoint."""
    lo, hi = get_probe_kind(probe_kind).n_checkpoints
    if hi == 1:
        return [(cell, (cid,)) for cell in cells for cid in cell.checkpoint_ids]
    return [(cell, cell.checkpoint_ids) for cell in cells if len(cell.checkpoint_ids) >= lo]


def probe_phase_cells(service_or_dispatcher, zoo_id: str, probe_kind: str = "sweep.cell",
                params: dict[str, Any] | None = None, *, checkpoints: Which = "final",
                owner: str = "local", compute_here: bool = False) -> list[PhaseRequest]:
    """Run ``probe_kind`` over every cell of a zoo as a set of probe jobs.

    Parameters
    ----------
    service_or_dispatcher : ProbeService or Dispatcher
        The owner's probe service (a dispatcher is wrapped in one).
    zoo_id : str
    probe_kind : str, default "sweep.cell"
        Any registered probe kind; kinds taking exactly one checkpoint get one request per
        checkpoint, the others one per cell.
    params : dict, optional
        The probe's parameters (validated by its params model; defaults when None).
    checkpoints : {"final", "all"}
        Each run's final checkpoint, or every checkpoint.
    owner : str
        Recorded on the jobs.
    compute_here : bool
        Compute missing results in this process, one after another (notebooks, the CLI, tests),
        instead of queuing jobs.

    Returns
    -------
    list of PhaseRequest
        One per request, with its status: ``done`` (stored, shared), ``queued``/``running``
        (a job computing it, possibly someone else's) -- never a duplicate job.
    """
    service = _service(service_or_dispatcher)
    params = dict(params or {})
    out = []
    for cell, ids in _requests(phase_cells(service.store, zoo_id, checkpoints=checkpoints), probe_kind):
        if compute_here and service.status(probe_kind, params, list(ids)).state in ("missing", "failed"):
            status = service.compute_here(probe_kind, params, list(ids), owner=owner)
        else:
            status = service.request(probe_kind, params, list(ids), owner=owner)
        out.append(PhaseRequest(cell, ids, status))
    return out


def phase_cells_status(service_or_dispatcher, zoo_id: str, probe_kind: str = "sweep.cell",
                 params: dict[str, Any] | None = None, *, checkpoints: Which = "final") -> list[PhaseRequest]:
    """Where every request of :func:`probe_phase_cells` stands, without queuing anything."""
    service = _service(service_or_dispatcher)
    params = dict(params or {})
    return [PhaseRequest(cell, ids, service.status(probe_kind, params, list(ids)))
            for cell, ids in _requests(phase_cells(service.store, zoo_id, checkpoints=checkpoints), probe_kind)]
