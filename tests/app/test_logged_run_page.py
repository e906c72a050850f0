"""A run logged from a script (engine.tracking) on the Zoo page: listed with where it came from, its error
shown literally, and a warning when its dataset cannot be loaded here."""

from __future__ import annotations

import torch
from conftest import current_services, shown

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
    assert table.loc["lr1.0-seed0", "built by"] == "my_models:ResNet18"
    assert table.loc["lr0.1-seed0", "built by"] == "mlp"
    assert table["hp_lr"].tolist() == [0.1, 1.0]
    warning = " ".join(shown(w.value) for w in at.warning)
    assert "1 logged run(s) name dataset 'my-cifar-npz', which is neither built in nor registered" in warning
