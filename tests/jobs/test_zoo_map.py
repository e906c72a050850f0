"""The zoo map through the job code path: one probe row per pair per distance, keyed as a single
``zoo.distance`` request, only new pairs computed when models are added, values equal to the engine's."""

import numpy as np
import pytest

from engine.jobs import ProbeService
from engine.jobs.builtin_probes.zoo import PairDistance, ZooDistanceParams
from engine.jobs.probe_job import CheckpointRef, ProbeInputs
from engine.jobs.zoo import checkpoint_ref, pair_keys, request_zoo_map, zoo_distances, zoo_models
from engine.probes import pairwise_distances

METRICS = ("weight", "barrier", "cka", "procrustes", "disagreement")


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, trained_zoo):
    sweep = {"name": "map", "base": {"dataset": {"name": "moons"}, "arch": {"name": "mlp", "width": 8},
                                     "batch_size": 32, "steps": 40, "checkpoints": "linear:2"},
             "grid": {"width": [8, 12], "seed": [0, 1, 2]}}
    with trained_zoo(tmp_path_factory.mktemp("zoomap"), sweep) as (st, disp, zoo_id):
        yield st, disp, zoo_id


def _rows(st):
    return len(st.list_probes("zoo.distance"))


def test_adding_models_computes_only_the_new_pairs(zoo):
    st, disp, zoo_id = zoo
    service = ProbeService(disp)
    models = zoo_models(st, zoo_id)
    assert len(models) == 6 and len({m.group for m in models}) == 2  # two widths: two architectures
    before = _rows(st)
    first = request_zoo_map(service, models[:4], ("cka",), {"alphas": 5}, compute_here=True)
    assert first.complete and first.pairs == 6 and _rows(st) - before == 6  # C(4, 2) pairs
    again = request_zoo_map(service, models[:4], ("cka",), {"alphas": 5}, compute_here=True)
    assert again.job_id is None and _rows(st) - before == 6  # nothing recomputed
    grown = request_zoo_map(service, models[:5], ("cka",), compute_here=True)  # alphas: not used by cka
    assert grown.complete and _rows(st) - before == 10  # the fifth model brings exactly K - 1 = 4 pairs


def test_weight_space_pairs_stay_within_an_architecture(zoo):
    st, disp, zoo_id = zoo
    models = zoo_models(st, zoo_id)
    keys = pair_keys(models, "barrier")
    assert len(keys) == 2 * 3  # C(3, 2) within each width, none across
    assert all(models[i].group == models[j].group for i, j in keys)
    assert len(pair_keys(models, "disagreement")) == 15


def test_stored_map_equals_the_engine_and_a_single_request_finds_its_pair(zoo):
    st, disp, zoo_id = zoo
    service = ProbeService(disp)
    # in the order of their checkpoint ids: the stored pair aligns the second to the first, in that order
    models = sorted((m for m in zoo_models(st, zoo_id) if '"width": 8' in m.group), key=lambda m: m.checkpoint_id)
    status = request_zoo_map(service, models, METRICS, {"alphas": 5}, compute_here=True)
    assert status.complete and not status.errors
    loaded = {m.label: _module(service, m) for m in models}
    data = _dataset(service, models[0])
    for metric in METRICS:
        stored = zoo_distances(st, models, metric, {"alphas": 5})
        assert stored.missing == 0 and stored.labels == tuple(m.label for m in models)
        ref = pairwise_distances(loaded, data, metric=metric, alphas=5)
        np.testing.assert_allclose(stored.matrix, ref.matrix, atol=1e-5, err_msg=metric)
    pair = [models[1].checkpoint_id, models[0].checkpoint_id]  # either order
    one = service.status("zoo.distance", {"metric": "barrier", "alphas": 5}, sorted(pair))
    assert one.state == "done" and isinstance(one.typed(), PairDistance)
    assert "max_minus_linear" in one.typed().description


def test_settings_a_distance_does_not_use_share_its_key():
    a = ZooDistanceParams.model_validate({"metric": "cka", "alphas": 7, "align": "none"})
    assert a == ZooDistanceParams(metric="cka")
    b = ZooDistanceParams.model_validate({"metric": "barrier", "alphas": 7})
    assert b.alphas == 7
    with pytest.raises(ValueError, match="metric"):
        ZooDistanceParams.model_validate({"metric": "euclid"})


def test_queued_pairs_are_not_queued_twice(zoo):
    st, disp, zoo_id = zoo
    service = ProbeService(disp)
    models = zoo_models(st, zoo_id, every_checkpoint=True)[:4]  # paths through training: every checkpoint
    assert all("@" in m.label for m in models)
    first = request_zoo_map(service, models, ("disagreement",))
    assert first.job_id is not None and first.pending == 6
    second = request_zoo_map(service, models, ("disagreement",))
    assert second.job_id is None and second.pending == 6
    disp.run_until_done([first.job_id])
    assert request_zoo_map(service, models, ("disagreement",), submit=False).complete


def _loaded(service, model):
    ref = CheckpointRef.model_validate(checkpoint_ref(service.store, model.checkpoint_id))
    return ProbeInputs(service.store.path, [ref]).load(0)


def _module(service, model):
    ck = _loaded(service, model)
    ck.model.load_state_dict(ck.state)
    return ck.model


def _dataset(service, model):
    return _loaded(service, model).dataset


def test_umap_of_the_stored_map_is_a_cached_probe(zoo):
    st, disp, zoo_id = zoo
    service = ProbeService(disp)
    models = zoo_models(st, zoo_id)
    assert request_zoo_map(service, models, ("disagreement",), compute_here=True).complete
    d = zoo_distances(st, models, "disagreement")
    params = {"distances": d.matrix.tolist(), "metric": "disagreement"}
    ids = [m.checkpoint_id for m in models]
    done = service.compute_here("zoo.umap", params, ids)
    emb = done.typed().embedding
    assert emb.coords.shape == (len(models), 2) and np.isfinite(emb.coords).all()
    assert emb.labels == tuple(ids) and emb.method == "umap"
    again = service.request("zoo.umap", params, ids)
    assert again.state == "done" and again.key == done.key  # stored, shared
    with pytest.raises(ValueError, match="square"):
        service.key("zoo.umap", {"distances": [[0.0, 1.0]]}, ids)
