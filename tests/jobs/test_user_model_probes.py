"""Every page's probes on user architectures (issue 16 §7): a transformers ResNet (BatchNorm) on digits
and a tiny GPT-2 LM (tied lm_head/wte, token cross-entropy) on markov, trained through the real
dispatcher and worker, then probed through the probe job's code path (``ProbeService.compute_here``)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from user_models_fixtures import GPT2, gpt2_import_argv, gpt2_sweep, resnet_sweep

pytest.importorskip("transformers")


@pytest.fixture(scope="module", params=["resnet", "gpt2"])
def zoo(request, tmp_path_factory, trained_zoo):
    sweep = resnet_sweep() if request.param == "resnet" else gpt2_sweep()
    with trained_zoo(tmp_path_factory.mktemp(request.param), sweep) as (st, disp, zoo_id):
        for _ in range(40):  # a bundle the worker wrote last may land after the job row says done
            st.ingest_bundles()
            ck = st.list_checkpoints(zoo_id=zoo_id)
            ids = ck[ck["step"] == 4]["checkpoint_id"].tolist()
            if len(ids) == 2:
                break
            time.sleep(0.25)
        assert len(ids) == 2, (ck[["step", "train_loss"]], st.runs_table(zoo_id)[["status", "final_train_loss"]])
        yield request.param, st, disp, ids


def _done(disp, probe, params, ids):
    from engine.jobs import ProbeService

    done = ProbeService(disp).compute_here(probe, params, ids)
    assert done.state == "done", done
    return done


def test_landscape_surfaces_centre_on_the_checkpoint(zoo):
    _, st, disp, ids = zoo
    for ndim in (1, 2):
        res = _done(disp, "landscape.surface", {"ndim": ndim, "resolution": 3, "n_samples": 32}, ids[:1]).result
        losses = [np.asarray(v) for k, v in res.arrays.items() if "loss" in k]
        assert losses and all(np.isfinite(v).all() for v in losses)


def test_top_hessian_eigenvalue_is_finite(zoo):
    # a GPT-2's HVPs need the math attention kernel (CPU flash attention has no double backward)
    _, st, disp, ids = zoo
    res = _done(disp, "curvature.spectrum", {"k": 1, "n_samples": 32, "n_probes": 2, "n_iter": 4, "n_runs": 1},
                ids[:1]).result
    assert all(np.isfinite(np.asarray(v, dtype=float)).all() for v in res.arrays.values())


def test_representations_activations(zoo):
    _, st, disp, ids = zoo
    _done(disp, "representations.activations", {"max_samples": 16}, ids)


def test_interpolation_with_weight_matching_on_the_inferred_spec(zoo):
    name, st, disp, ids = zoo
    bn = ["running", "reset"] if name == "resnet" else ["running"]
    done = _done(disp, "connectivity.paths", {"methods": ["none", "weight"], "bn": bn, "alphas": 3}, ids)
    assert all(v < 1e-3 for v in done.result.summary["check_max_diff"].values())


@pytest.fixture(scope="module")
def imported_gpt2(tmp_path_factory):
    """Two GPT-2 runs brought in by ``import-run``: one from ``torch.save(model.state_dict())`` files, which
    hold the tied ``lm_head.weight`` as well as ``transformer.wte.weight`` (the common way users save), one
    from safetensors files holding the tied tensor once (the trainer's checkpoints; was refused with
    "needs keys ['lm_head.weight'] that the checkpoint lacks")."""
    import torch
    from safetensors.torch import save_file

    import store
    from engine import data as zdata
    from engine import nets
    from engine.cli import _parser
    from engine.config import ArchSpec, DatasetSpec
    from engine.importer import import_run_command
    from engine.jobs import Dispatcher

    tmp = tmp_path_factory.mktemp("imported")
    path = tmp / "store"
    store.open_store(path).close()
    arch, ds = ArchSpec.model_validate(GPT2), zdata.load(DatasetSpec(name="markov"))
    for seed in (0, 1):
        folder = tmp / f"run{seed}"
        folder.mkdir()
        model = nets.build(arch, ds.input_shape, ds.n_outputs, vocab_size=ds.vocab_size, seed=seed)
        assert "lm_head.weight" in model.state_dict()  # the tied alias is in what users save
        for step in (0, 5):
            if seed == 0:
                torch.save(model.state_dict(), folder / f"step_{step}.pt")
            else:  # as Zooscope's trainer stores it: each tied tensor once, under its first name
                save_file({k: v.detach().contiguous() for k, v in model.named_parameters()},
                          str(folder / f"step_{step}.safetensors"))
        argv = gpt2_import_argv(path, folder, "imp", f"r{seed}")
        assert import_run_command(_parser().parse_args(argv), path) == 0
    st = store.open_store(path)
    disp = Dispatcher(st)
    ck = st.list_checkpoints()
    yield st, disp, ck[ck["step"] == 5]["checkpoint_id"].tolist()
    disp.stop(kill_workers=True)
    st.close()


def test_imported_tied_weights_are_probed_once(imported_gpt2):
    # was: "functional_call got multiple values for keys ['lm_head.weight', 'transformer.wte.weight'], which are tied"
    st, disp, ids = imported_gpt2
    assert len(ids) == 2
    res = _done(disp, "landscape.surface", {"ndim": 1, "resolution": 3, "n_samples": 32}, ids[:1]).result
    assert all(np.isfinite(np.asarray(v)).all() for k, v in res.arrays.items() if "loss" in k)
    _done(disp, "representations.activations", {"max_samples": 16}, ids)
    done = _done(disp, "connectivity.paths", {"methods": ["none", "weight"], "alphas": 3}, ids)
    assert all(v < 1e-3 for v in done.result.summary["check_max_diff"].values())


def test_functional_dimension_is_refused_with_the_reason(zoo):
    """The positive-scaling count is known for Linear + ReLU networks only: a ResNet or a GPT-2 is refused
    with what to pass instead, not a wrong number."""
    _, st, disp, ids = zoo
    with pytest.raises(ValueError, match=r"inferred only for Linear \+ ReLU networks.*pass n_hidden_neurons"):
        _done(disp, "landscape.functional_dimension", {}, ids[:1])
