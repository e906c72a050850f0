"""The fair queue: per-owner caps, FIFO within an owner, no owner starving another."""

import random

import pytest

import store
from engine.jobs import Dispatcher, LocalExecutor


@pytest.fixture
def st(tmp_path):
    with store.open_store(tmp_path / "store") as st_:
        yield st_


def _queue(st_, owners: list[str]) -> dict[str, list[str]]:
    """Submit one job per entry of ``owners``, in order; returns owner -> job ids in submission order."""
    jobs: dict[str, list[str]] = {}
    for o in owners:
        jobs.setdefault(o, []).append(st_.submit_job("noop", {}, owner=o))
    return jobs


def _running(st_) -> dict[str, int]:
    return st_.list_jobs(status="running")["owner"].value_counts().to_dict()


def _simulate(st_, *, workers: int, cap: int, rng: random.Random, arrivals: list[str]) -> list[str]:
    """Run a scheduler over the catalog: start jobs while slots and caps allow, finish a random one, repeat.

    New jobs arrive between rounds. Checks the caps at every step; returns job ids in start order.
    """
    started, pending = [], list(arrivals)
    while True:
        for _ in range(rng.randint(0, 2)):
            if pending:
                st_.submit_job("noop", {}, owner=pending.pop(0))
        while len(st_.list_jobs(status="running")) < workers:
            job = st_.next_queued_job(claim=True, per_user_cap=cap)
            if job is None:
                break
            started.append(job["job_id"])
            assert all(n <= cap for n in _running(st_).values()), _running(st_)
        running = st_.list_jobs(status="running")["job_id"].tolist()
        if not running and not pending and st_.next_queued_job(per_user_cap=cap) is None:
            return started
        if running:
            st_.update_job(rng.choice(running), status="done")


@pytest.mark.parametrize("seed", range(4))
def test_no_owner_exceeds_the_cap_and_each_owner_is_fifo(st, seed):
    rng = random.Random(seed)
    owners = ["ann", "bo", "cy"]
    initial = [rng.choice(owners) for _ in range(6)]
    arrivals = [rng.choice(owners) for _ in range(6)]
    submitted = _queue(st, initial)
    cap = rng.choice([1, 2])
    started = _simulate(st, workers=rng.choice([1, 2, 3]), cap=cap, rng=rng, arrivals=arrivals)
    jobs = st.list_jobs()
    assert len(started) == len(jobs) == 12 and set(started) == set(jobs["job_id"])  # everything ran once
    by_owner = jobs.sort_values(["created_at", "job_id"]).groupby("owner")["job_id"].apply(list).to_dict()
    for owner, ids in by_owner.items():
        assert [j for j in started if j in set(ids)] == ids, f"{owner}'s jobs started out of order"
    assert submitted  # (the initial jobs are part of by_owner)


def test_ten_jobs_of_one_user_cannot_starve_another_users_one(st):
    _queue(st, ["greedy"] * 10)
    (late,) = _queue(st, ["modest"])["modest"]
    assert st.queue_position(late) == 2  # after greedy's first job, before the other nine
    first = st.next_queued_job(claim=True, per_user_cap=0)
    assert first["owner"] == "greedy"
    assert st.next_queued_job(claim=True, per_user_cap=0)["job_id"] == late


def test_position_counts_running_jobs_and_follows_the_start_order(st):
    busy = _queue(st, ["ann", "ann", "ann"])["ann"]
    st.next_queued_job(claim=True)  # ann's first job runs
    (bo,) = _queue(st, ["bo"])["bo"]
    assert st.queue_position(bo) == 1  # bo runs nothing yet: first, though newest
    assert [st.queue_position(j) for j in busy] == [None, 2, 3]
    assert st.queue_positions() == {bo: 1, busy[1]: 2, busy[2]: 3}
    order = []
    while (job := st.next_queued_job(claim=True)) is not None:
        order.append(job["job_id"])
    assert order == [bo, busy[1], busy[2]]  # positions were the start order
    assert st.queue_position(bo) is None


def test_an_owner_at_the_cap_waits_while_others_start(st):
    ann = _queue(st, ["ann", "ann"])["ann"]
    (bo,) = _queue(st, ["bo"])["bo"]
    assert st.next_queued_job(claim=True, per_user_cap=1)["job_id"] == ann[0]
    assert st.next_queued_job(claim=True, per_user_cap=1)["job_id"] == bo
    assert st.next_queued_job(claim=True, per_user_cap=1) is None  # ann is at her cap
    st.update_job(ann[0], status="done")
    assert st.next_queued_job(claim=True, per_user_cap=1)["job_id"] == ann[1]


def test_cap_must_not_be_negative(st):
    with pytest.raises(ValueError, match="per_user_cap must be >= 0"):
        st.next_queued_job(per_user_cap=-1)


def test_the_dispatcher_applies_the_per_user_cap_and_the_worker_count(tmp_path, monkeypatch):
    class Slots(LocalExecutor):  # starts nothing: records which jobs the dispatcher would start
        def start(self, job_id):
            self._procs[job_id] = None
            return 0

        def poll(self):
            return []

    with store.open_store(tmp_path / "store") as st_:
        disp = Dispatcher(st_, executor=Slots(st_.path, max_workers=3), per_user=2)
        ids = [disp.submit("warm_umap", {}, owner="ann") for _ in range(3)] + [disp.submit("warm_umap", {},
                                                                                            owner="bo")]
        started = disp.tick().started
        assert started == [ids[0], ids[3], ids[1]]  # fair, FIFO per owner, 3 workers, ann capped at 2
        assert disp.queue_position(ids[2]) == 1 and disp.queue_position(ids[0]) is None
