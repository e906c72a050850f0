"""Cancelling a Hessian probe mid-computation: it stops within a chunk and leaves nothing half-written."""

import pytest

from engine.jobs import JobCancelled, ProbeService, probe_job
from engine.jobs.context import JobContext

PARAMS = {"k": 2, "n_samples": 200, "n_probes": 8, "n_iter": 8, "n_runs": 1}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, trained_zoo):
    sweep = {"name": "cancel", "base": {"dataset": {"name": "moons"}, "arch": {"name": "mlp", "width": 8},
                                        "batch_size": 32, "steps": 20, "checkpoints": "linear:2"}}
    with trained_zoo(tmp_path_factory.mktemp("cancel"), sweep) as (st, disp, zoo_id):
        yield st, disp, st.list_checkpoints(zoo_id=zoo_id).sort_values("step")["checkpoint_id"].tolist()


class _Recording(JobContext):
    """A job context that records every progress message and presses "cancel" at the ``cancel_at``-th."""

    cancel_at: int | None = None
    messages: list[str] = []

    def progress(self, fraction, message="", **kw):
        type(self).messages.append(message)
        if len(type(self).messages) == type(self).cancel_at:
            (self.dir / "cancel").touch()  # what the dashboard's cancel button does (request_cancel)
        super().progress(fraction, message, **kw)


def _files(root):
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def test_cancel_mid_hessian_leaves_nothing_half_written(trained, monkeypatch):
    st, disp, ids = trained
    monkeypatch.setattr(probe_job, "JobContext", _Recording)
    monkeypatch.setattr(_Recording, "messages", [])
    monkeypatch.setattr(_Recording, "cancel_at", 4)  # during the top eigenvalues' Lanczos
    artifacts = _files(st.path / "artifacts")
    service = ProbeService(disp)
    with pytest.raises(JobCancelled, match="was cancelled"):
        service.compute_here("curvature.spectrum", PARAMS, ids[-1:])
    assert len(_Recording.messages) == 4  # stopped at the next report: one data chunk later
    assert "top eigenvalues" in _Recording.messages[-1]
    st.ingest_bundles()
    assert service.status("curvature.spectrum", PARAMS, ids[-1:]).state != "done"
    assert _files(st.path / "artifacts") == artifacts  # no artifact written
    assert not list((st.path / "inbox").rglob("manifest.json"))  # no bundle either


def test_hessian_probe_reports_products_and_an_eta(trained, monkeypatch):
    st, disp, ids = trained
    monkeypatch.setattr(probe_job, "JobContext", _Recording)
    monkeypatch.setattr(_Recording, "messages", [])
    monkeypatch.setattr(_Recording, "cancel_at", None)
    done = ProbeService(disp).compute_here("curvature.spectrum", PARAMS, ids[-1:])
    assert done.state == "done"
    tops = [m for m in _Recording.messages if "top eigenvalues:" in m]
    assert tops and all("products" in m and "s left" in m for m in tops)
    assert any("λ ≈" in m for m in tops)
    assert any("trace (8 Hutchinson probes):" in m for m in _Recording.messages)
    assert any(m.startswith("curvature.spectrum: density") and "s left" in m for m in _Recording.messages)


def test_surface_probe_reports_every_point_with_an_eta(trained, monkeypatch):
    st, disp, ids = trained
    monkeypatch.setattr(probe_job, "JobContext", _Recording)
    monkeypatch.setattr(_Recording, "messages", [])
    monkeypatch.setattr(_Recording, "cancel_at", None)
    ProbeService(disp).compute_here("landscape.surface", {"resolution": 3}, ids[-1:])
    points = [m for m in _Recording.messages if "point " in m]
    assert len(points) == 9 and points[-1].startswith("landscape.surface: 3×3 grid: point 9/9")
    assert all("s left" in m for m in points[1:])
