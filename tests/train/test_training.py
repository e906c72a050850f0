import math

import pytest
import torch

from engine.config import ArchSpec, DatasetSpec, OptimSpec, TrainSpec
from engine.train import BatchOrder, population_groups, train_population, train_run


def _spec(**kw):
    base = dict(dataset=DatasetSpec(name="moons"), arch=ArchSpec(name="mlp", width=16, depth=2),
                optim=OptimSpec(name="momentum", lr=0.05), batch_size=32, steps=40, checkpoints="linear:4")
    base.update(kw)
    return TrainSpec(**base)


class Recorder:
    def __init__(self):
        self.states, self.metrics = {}, {}

    def __call__(self, run, step, epoch, state, metrics):
        self.states[(run, step)] = state
        self.metrics[(run, step)] = metrics


@pytest.mark.parametrize("optim", ["sgd", "momentum", "adamw"])
def test_population_matches_single_runs(optim):
    specs = [_spec(seed=s, optim=OptimSpec(name=optim, lr=lr, weight_decay=wd))
             for s, lr, wd in [(0, 0.05, 0.0), (1, 0.02, 1e-3), (2, 0.1, 0.0)]]
    pop = Recorder()
    results = train_population(specs, on_checkpoint=pop)
    assert [r.status for r in results] == ["done"] * 3
    for k, spec in enumerate(specs):
        single = Recorder()
        res = train_run(spec, on_checkpoint=single)
        for step in spec.checkpoint_steps():
            for name, tensor in single.states[(0, step)].items():
                torch.testing.assert_close(pop.states[(k, step)][name], tensor, rtol=1e-4, atol=1e-5)
        assert res.metrics["test_acc"] == pytest.approx(results[k].metrics["test_acc"], abs=1e-6)


def test_population_trains_batchnorm_models_like_single_runs():
    specs = [_spec(seed=s, arch=ArchSpec(name="mlp", width=16, depth=2, options={"batchnorm": True}))
             for s in (0, 1)]
    pop = Recorder()
    train_population(specs, on_checkpoint=pop)
    single = Recorder()
    train_run(specs[1], on_checkpoint=single)
    for name, tensor in single.states[(0, 40)].items():
        torch.testing.assert_close(pop.states[(1, 40)][name].to(tensor.dtype), tensor, rtol=1e-4, atol=1e-5)


def test_divergence_stops_only_that_run():
    teacher = DatasetSpec(name="teacher")
    specs = [_spec(seed=0, dataset=teacher, optim=OptimSpec(name="sgd", lr=0.01)),
             _spec(seed=1, dataset=teacher, optim=OptimSpec(name="sgd", lr=5.0),
                   arch=ArchSpec(name="mlp", width=16, init_scale=3))]
    rec = Recorder()
    good, bad = train_population(specs, on_checkpoint=rec)
    assert good.status == "done" and good.steps == 40 and good.diverged_step is None
    assert bad.status == "diverged" and 1 <= bad.diverged_step <= 40
    assert all(step < bad.diverged_step for run, step in rec.states if run == 1)
    assert all(math.isfinite(v) for t in (rec.states[(0, 40)].values()) for v in t.flatten().tolist())
    alone = train_run(specs[1])
    assert alone.status == "diverged" and alone.diverged_step == bad.diverged_step


def test_checkpoints_follow_the_schedule_with_metrics():
    rec = Recorder()
    res = train_run(_spec(), on_checkpoint=rec)
    assert sorted(step for _, step in rec.states) == [0, 10, 20, 30, 40]
    assert set(rec.metrics[(0, 40)]) == {"train_loss", "train_acc", "test_loss", "test_acc"}
    assert res.metrics == rec.metrics[(0, 40)]
    assert rec.metrics[(0, 40)]["train_loss"] < rec.metrics[(0, 0)]["train_loss"]


def test_training_is_deterministic_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.get_rng_state()
    a, b = Recorder(), Recorder()
    train_run(_spec(seed=5), on_checkpoint=a)
    train_run(_spec(seed=5), on_checkpoint=b)
    assert torch.equal(torch.get_rng_state(), before)
    for name, t in a.states[(0, 40)].items():
        assert torch.equal(t, b.states[(0, 40)][name])


def test_regression_task_trains_with_mse():
    res = train_run(_spec(dataset=DatasetSpec(name="teacher"), optim=OptimSpec(name="adamw", lr=0.01)))
    assert res.status == "done" and math.isnan(res.metrics["test_acc"]) and res.metrics["test_loss"] >= 0


def test_cancellation_and_progress():
    seen = []
    res = train_run(_spec(steps=100), on_progress=lambda step, total, loss: seen.append(step),
                    should_stop=lambda: len(seen) >= 3)
    assert res.status == "cancelled" and res.steps == seen[-1] < 100


def test_population_groups_split_incompatible_specs():
    specs = [_spec(seed=0), _spec(seed=1), _spec(batch_size=16), _spec(optim=OptimSpec(name="adamw"))]
    assert population_groups(specs) == [[0, 1], [2], [3]]
    with pytest.raises(ValueError, match="split them with population_groups"):
        train_population(specs)
    with pytest.raises(ValueError, match="expected at least one spec, got 0"):
        train_population([])


def test_batch_order_covers_each_epoch_once_and_rejects_oversized_batches():
    order = BatchOrder(10, 3, seed=0)
    epoch = torch.cat([order.next() for _ in range(3)])
    assert len(set(epoch.tolist())) == 9
    with pytest.raises(ValueError, match="batch_size 64 is larger than the training set \\(10 samples\\)"):
        BatchOrder(10, 64, seed=0)
