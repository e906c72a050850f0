"""The executor interface: the dispatcher drives any object with the six members of ``Executor``."""

from __future__ import annotations

import store
from engine.jobs import Dispatcher, Executor, LocalExecutor
from engine.jobs.executors import Finished, log_tail, worker_log_path
from engine.jobs.worker import run_job


class InlineExecutor:
    """Runs each job in this process when it starts; no base class, only the Protocol's members."""

    def __init__(self, store_path):
        self.store_path = store_path
        self._ended: dict[str, int] = {}

    @property
    def free_slots(self) -> int:
        return 1

    def running(self) -> list[str]:
        return list(self._ended)

    def start(self, job_id: str) -> None:
        self._ended[job_id] = run_job(self.store_path, job_id)

    def poll(self) -> list[Finished]:
        done = [Finished(j, rc, log_tail(worker_log_path(self.store_path, j))) for j, rc in self._ended.items()]
        self._ended.clear()
        return done

    def kill(self, job_id: str) -> None:
        pass

    def shutdown(self) -> None:
        self._ended.clear()


def test_the_executors_satisfy_the_protocol(tmp_path):
    assert isinstance(LocalExecutor(tmp_path, max_workers=1), Executor)
    assert isinstance(InlineExecutor(tmp_path), Executor)
    assert not isinstance(object(), Executor)


def test_the_dispatcher_runs_a_job_through_any_executor(tmp_path, tiny_sweep):
    st = store.open_store(tmp_path / "store")
    disp = Dispatcher(st, executor=InlineExecutor(st.path), per_user=0)
    try:
        zoo_id, job_id = disp.submit_sweep(tiny_sweep(steps=10), population=False)
        (job,) = disp.run_until_done([job_id], poll_s=0.0)
        assert job["status"] == "done"
        assert list(st.runs_table(zoo_id)["status"]) == ["done", "done"]
    finally:
        disp.stop(kill_workers=True)
        st.close()


def test_a_missing_log_reads_as_empty(tmp_path):
    assert log_tail(worker_log_path(tmp_path, "no-such-job")) == ""
