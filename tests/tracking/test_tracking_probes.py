"""A logged run's checkpoints go through the probes like a trained run's: its TrainSpec-shaped config
rebuilds the model and loads the data."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import store
from engine import data as zdata
from engine import nets
from engine.config import ArchSpec
from engine.jobs import Dispatcher, ProbeService
from engine.tracking import start_run


def test_the_evaluate_probe_on_a_logged_checkpoint_matches_the_scripts_own_loss(tmp_path):
    path = tmp_path / "store"
    ds = zdata.load("moons")
    model = nets.build(ArchSpec(name="mlp", width=8, depth=1), ds.input_shape, ds.n_outputs, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    with start_run(path, zoo="probed", arch="mlp", arch_kwargs={"width": 8, "depth": 1}, dataset="moons") as run:
        for step in range(1, 21):
            opt.zero_grad()
            loss = F.cross_entropy(model(ds.x_train), ds.y_train)
            loss.backward()
            opt.step()
            run.log(step, train_loss=loss.item())
        with torch.no_grad():
            final = F.cross_entropy(model(ds.x_train), ds.y_train).item()
        run.checkpoint(model, 20, train_loss=final)
    with store.open_store(path) as st:
        disp = Dispatcher(st)
        try:
            st.ingest_bundles()
            (ckpt,) = st.list_checkpoints(run.run_id)["checkpoint_id"]
            done = ProbeService(disp).compute_here("evaluate", {"split": "train"}, [ckpt])
            assert done.state == "done", done
            assert done.result.summary["loss"][0] == pytest.approx(final, rel=1e-4)
        finally:
            disp.stop(kill_workers=True)
