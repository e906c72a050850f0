"""AppTest: every page runs on a zoo of user architectures (issue 16 §7): a transformers ResNet (BatchNorm)
trained here, a tiny GPT-2 LM (tied weights, token cross-entropy) trained here, GPT-2 runs imported with
``import-run`` and GPT-2 runs logged from a training loop with ``engine.tracking.start_run``."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest
from app_conftest import PAGES
from user_models_fixtures import GPT2, gpt2_import_argv, gpt2_sweep, resnet_sweep

pytest.importorskip("transformers")

ZOOS = ("resnet", "gpt2", "imported", "logged")


def _log_runs(path: Path) -> None:
    """Two runs from a user's own loop (a few AdamW steps), written as bundles before the store is owned."""
    import torch
    import torch.nn.functional as F

    from engine import data as zdata
    from engine import nets
    from engine.config import ArchSpec, DatasetSpec
    from engine.tracking import start_run

    arch, ds = ArchSpec.model_validate(GPT2), zdata.load(DatasetSpec(name="markov"))
    for seed in (0, 1):
        model = nets.build(arch, ds.input_shape, ds.n_outputs, vocab_size=ds.vocab_size, seed=seed)
        opt = torch.optim.AdamW(model.parameters(), lr=0.01)
        with start_run(store=path, zoo="logged", name=f"s{seed}", arch=GPT2["factory"],
                       arch_kwargs=GPT2["kwargs"], arch_output="logits", dataset="markov") as run:
            for step in range(3):
                logits = model(ds.x_train[:16])
                loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), ds.y_train[:16].reshape(-1))
                opt.zero_grad()
                loss.backward()
                opt.step()
                run.log(step, train_loss=loss.item())
            run.checkpoint(model, 3)


def _import_runs(root: Path, path: Path) -> None:
    import torch

    from engine import data as zdata
    from engine import nets
    from engine.cli import main
    from engine.config import ArchSpec, DatasetSpec

    arch, ds = ArchSpec.model_validate(GPT2), zdata.load(DatasetSpec(name="markov"))
    for seed in (0, 1):
        folder = root / f"run{seed}"
        folder.mkdir()
        model = nets.build(arch, ds.input_shape, ds.n_outputs, vocab_size=ds.vocab_size, seed=seed)
        for step in (0, 5):
            torch.save(model.state_dict(), folder / f"step_{step}.pt")  # tied lm_head.weight included
        assert main(gpt2_import_argv(path, folder, "imported", f"r{seed}")) == 0


@pytest.fixture(scope="module")
def user_template(tmp_path_factory) -> Path:
    """The four zoos, with a few small probes of each stored (surface, spectrum, paths, activations)."""
    import store
    from engine.config import load_sweep
    from engine.jobs import Dispatcher, ProbeService

    root = tmp_path_factory.mktemp("user")
    path = root / "store"
    _log_runs(path)
    _import_runs(root, path)
    st = store.open_store(path)
    disp = Dispatcher(st)
    try:
        jobs = [disp.submit_sweep(load_sweep(resnet_sweep()))[1], disp.submit_sweep(load_sweep(gpt2_sweep()))[1]]
        assert all(j["status"] == "done" for j in disp.run_until_done(jobs))
        service = ProbeService(disp)
        for zoo in ZOOS:
            for _ in range(40):  # a bundle the worker wrote last may land after the job row says done
                st.ingest_bundles()
                ck = st.list_checkpoints(zoo_id=st.get_zoo(zoo)["zoo_id"])
                ids = ck[ck["step"] == ck["step"].max()]["checkpoint_id"].tolist()
                if len(ids) == 2:
                    break
                time.sleep(0.25)
            assert len(ids) == 2, (zoo, ck)
            for probe, params, n in [
                ("landscape.surface", {"ndim": 2, "resolution": 3, "n_samples": 32}, 1),
                ("curvature.spectrum", {"k": 1, "n_samples": 32, "n_probes": 2, "n_iter": 4, "n_runs": 1}, 1),
                ("connectivity.paths", {"methods": ["none", "weight"], "alphas": 3}, 2),
                ("representations.activations", {"max_samples": 16}, 2),
            ]:
                done = service.compute_here(probe, params, ids[:n])
                assert done.state == "done", (zoo, probe, done)
    finally:
        disp.stop(kill_workers=True)
        st.close()
    return path


@pytest.mark.parametrize("zoo", ZOOS)
def test_every_page_runs_on_user_model_zoos(app, user_template, tmp_path, zoo):
    s = shutil.copytree(user_template, tmp_path / "store")
    import store

    with store.open_store(s, owner=False) as st:
        zoo_id = st.get_zoo(zoo)["zoo_id"]
    at = app(s)
    at.sidebar.selectbox(key="zoo").set_value(zoo_id).run()
    assert not at.exception, at.exception
    for page in PAGES:
        at.switch_page(page).run()
        assert not at.exception, (zoo, page, at.exception)
        assert at.title, f"{page} shows no title on zoo {zoo!r}"
        assert not at.error, (zoo, page, [e.value for e in at.error])
