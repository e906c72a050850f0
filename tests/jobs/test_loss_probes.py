"""Probe jobs measure the run's own loss: a regression net's surface and Hessian are those of its MSE."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from engine import data as zdata
from engine import nets
from engine.config import TrainSpec
from engine.jobs import ProbeService
from engine.probes import flatten_params


@pytest.fixture(scope="module")
def regression_zoo(tmp_path_factory, trained_zoo):
    sweep = {"name": "reg", "base": {"dataset": {"name": "teacher"}, "arch": {"name": "mlp", "width": 8},
                                     "batch_size": 32, "steps": 30, "checkpoints": [0, 30], "loss": "mse"}}
    with trained_zoo(tmp_path_factory.mktemp("reg"), sweep) as (st, disp, zoo_id):
        yield st, disp, st.list_checkpoints(zoo_id=zoo_id).sort_values("step")


def _by_hand(st, ckpt_id: str, split: str = "train"):
    """The checkpoint's model, parameters and data, and the MSE on ``split`` computed here."""
    ck = st.get_checkpoint(ckpt_id)
    config = TrainSpec.model_validate(st.get_run(ck["run_id"])["config"])
    ds = zdata.load(config.dataset)
    model = nets.build(config.arch, ds.input_shape, ds.n_outputs, vocab_size=ds.vocab_size).eval()
    state = st.get_tensors(ck["artifact_sha"])
    model.load_state_dict(state)
    x, y = (ds.x_train, ds.y_train) if split == "train" else (ds.x_test, ds.y_test)
    with torch.no_grad():
        return model, ds, float(F.mse_loss(model(x), y))


def test_regression_surface_probe_centre_is_the_mse_by_hand(regression_zoo):
    st, disp, ckpts = regression_zoo
    last = ckpts["checkpoint_id"].iloc[-1]
    done = ProbeService(disp).compute_here("landscape.surface", {"resolution": 3, "n_samples": None}, [last])
    assert done.state == "done", done
    surface = done.typed()
    _, _, mse = _by_hand(st, last)
    assert surface.center_loss == pytest.approx(mse, rel=1e-5)
    assert ckpts["train_loss"].iloc[-1] == pytest.approx(mse, rel=1e-4)  # training recorded the same loss


def test_regression_hessian_probe_is_the_hessian_of_the_mse(regression_zoo):
    st, disp, ckpts = regression_zoo
    last = ckpts["checkpoint_id"].iloc[-1]
    done = ProbeService(disp).compute_here("curvature.spectrum", {"k": 1, "n_samples": None, "n_probes": 4,
                                                                  "n_iter": 8, "n_runs": 1}, [last])
    assert done.state == "done", done
    top = float(done.typed().top.eigenvalues[0])
    model, ds, _ = _by_hand(st, last)
    model = model.double()
    theta, layout = flatten_params({k: v.detach() for k, v in model.named_parameters()})
    x, y = ds.x_train.double(), ds.y_train.double()
    dense = torch.autograd.functional.hessian(
        lambda t: F.mse_loss(torch.func.functional_call(model, layout.unflatten(t), (x,)), y), theta)
    assert top == pytest.approx(float(torch.linalg.eigvalsh(dense)[-1]), rel=1e-3)
