"""A run logged from a script (engine.tracking) on the Zoo page: listed with where it came from, its error
shown literally, and a warning when its dataset cannot be loaded here; and a script logging while a real
server owns the store."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import torch
from app_conftest import REPO_ROOT, current_services, shown
from ws_session import Session

import store
from engine.tracking import start_run


def _log_runs(path):
    model = torch.nn.Sequential(torch.nn.Linear(40, 8), torch.nn.ReLU(), torch.nn.Linear(8, 10))
    with start_run(path, zoo="my-sweep", name="lr0.1-seed0", config={"lr": 0.1, "seed": 0}, arch="mlp",
                   arch_kwargs={"width": 8, "depth": 1}, dataset="mnist1d") as run:
        for step in range(5):
            run.log(step, train_loss=1.0 / (step + 1), train_acc=0.1 * step)
        run.checkpoint(model, 5, train_loss=0.2, test_acc=0.3)
    try:
        with start_run(path, zoo="my-sweep", name="lr1.0-seed0", config={"lr": 1.0, "seed": 0},
                       arch="my_models:ResNet18", arch_kwargs={"num_classes": 10}, dataset="my-cifar-npz") as run:
            run.log(0, train_loss=2.0)
            raise ValueError("loss exploded <script>alert(1)</script>")
    except ValueError:
        pass


def test_logged_runs_show_on_the_zoo_page_while_the_server_owns_the_store(app, empty_store):
    at = app(empty_store)  # the app owns the store from here on
    _log_runs(empty_store)
    current_services().dispatcher.tick()  # what the background loop does every 0.5 s
    at.run()
    assert not at.exception, at.exception
    assert shown(at.title[0].value) == "Zoo · my-sweep"
    table = at.dataframe(key="runs_table").value.set_index("name")
    assert table.loc["lr0.1-seed0", "status"] == "done" and table.loc["lr0.1-seed0", "final_test_acc"] == 0.3
    assert table.loc["lr1.0-seed0", "status"] == "failed"
    assert table.loc["lr1.0-seed0", "message"] == "ValueError: loss exploded <script>alert(1)</script>"
    assert set(table["origin"]) == {"logged from a script"}
    assert table.loc["lr1.0-seed0", "built by"] == "my_models:ResNet18(num_classes=10)"
    assert table.loc["lr0.1-seed0", "built by"].startswith("built-in mlp")
    assert table["hp_lr"].tolist() == [0.1, 1.0]
    warning = " ".join(shown(w.value) for w in at.warning)
    assert "1 logged run(s) name dataset 'my-cifar-npz', which is neither built in nor registered" in warning


def test_a_script_logging_while_a_real_server_owns_the_store_is_ingested_live(serve, tmp_path):
    path = tmp_path / "store"
    server = serve(path)

    async def open_session() -> None:
        async with Session(server.url) as first:  # the first session opens the store as its owner
            run = await first.run()
        assert not run.problems, run.problems

    with ThreadPoolExecutor(1) as pool:  # a thread of its own: Playwright may hold an event loop in this one
        pool.submit(asyncio.run, open_session()).result()
    script = REPO_ROOT / "tests" / "tracking" / "logging_script.py"
    proc = subprocess.run([sys.executable, str(script), str(path), "done", "served"], cwd=REPO_ROOT,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)}, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    deadline = time.monotonic() + 60
    while any((path / "inbox").glob("track-*")) and time.monotonic() < deadline:
        time.sleep(0.2)  # the server's dispatcher takes bundles in every 0.5 s and removes them
    assert not any((path / "inbox").glob("track-*")), server.log()
    server.stop()
    with store.open_store(path, owner=False) as st:
        run = st.list_runs(st.get_zoo("served")["zoo_id"])
        assert run["status"].tolist() == ["done"] and run["origin"].tolist() == ["logged"]
        assert len(st.list_checkpoints(run["run_id"].tolist())) == 2


def _log_ended_runs(path):
    """Logged runs that ended early, with and without a checkpoint, beside one that finished."""
    model = torch.nn.Sequential(torch.nn.Linear(40, 8), torch.nn.ReLU(), torch.nn.Linear(8, 10))
    ends = [("finished", "done", True), ("crashed", "failed", True), ("killed", "stopped", True),
            ("crashed-early", "failed", False)]
    for name, status, checkpoint in ends:
        run = start_run(path, zoo="ended", name=name, config={"lr": 0.1}, arch="mlp",
                        arch_kwargs={"width": 8, "depth": 1}, dataset="mnist1d")
        run.log(0, train_loss=1.0)
        if checkpoint:
            run.checkpoint(model, 3, train_loss=0.5)
        run.finish(status, None if status == "done" else f"the script {status}")


def test_runs_that_ended_early_with_a_checkpoint_can_be_picked_for_probes(app, empty_store):
    at = app(empty_store)
    _log_ended_runs(empty_store)
    current_services().dispatcher.tick()
    zoo_id = current_services().store.get_zoo("ended")["zoo_id"]
    at = app(empty_store, page="pages/landscape.py", zoo=zoo_id)
    assert not at.exception, at.exception
    labels = at.selectbox(key="run").options
    assert [label.split(" · ")[:2] for label in labels] == [["crashed", "failed"], ["finished"],
                                                             ["killed", "stopped"]]
    at = app(empty_store, page="pages/connectivity.py", zoo=zoo_id)
    assert not at.exception, at.exception
    assert len(at.multiselect(key="runs_pick").options) == 3  # never the run without a checkpoint
    infos = " ".join(shown(i.value) for i in at.info)  # the instability tab of run A, a logged run
    assert "was logged rather than trained here: its optimiser settings are placeholders" in infos
