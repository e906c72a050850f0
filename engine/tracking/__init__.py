"""Runs from your own training loop, in the store while the dashboard owns it.

>>> from engine.tracking import start_run
>>> with start_run(store="zoo-store", zoo="my-sweep", name="lr0.1-seed0", config={"lr": 0.1, "seed": 0},
...                arch="my_models:ResNet18", arch_kwargs={"num_classes": 10}, dataset="my-cifar-npz") as run:
...     for step, (x, y) in enumerate(loader):
...         ...
...         run.log(step, train_loss=loss.item())
...         if step % 500 == 0:
...             run.checkpoint(model, step, test_acc=evaluate(model))

The script writes artifacts and result bundles only (never the catalog); the store's
owner ingests them. See :mod:`engine.tracking.run` and :mod:`store.logged_runs`.
"""

from .run import NoOpRun, Run, ingest_pending, start_run
from .spec import MAX_CONFIG_BYTES, built_by, check_config, logged_arch, metric_key

__all__ = ["MAX_CONFIG_BYTES", "NoOpRun", "Run", "built_by", "check_config", "ingest_pending", "logged_arch",
           "metric_key", "start_run"]
