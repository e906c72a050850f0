"""A user's training script, run in a subprocess by the tracking tests.

    python logging_script.py STORE MODE [ZOO]

MODE: ``done`` (trains 30 steps, checkpoints at 0 and 30), ``raise`` (raises after step 5),
``kill`` (checkpoints, prints ``READY <run_id>`` and keeps logging until killed),
``noclose`` (start_run without ``with``, never finishes). The model's weights at the last
checkpoint are saved next to the store as ``<run_id>.safetensors`` for comparison.
"""

from __future__ import annotations

import sys
import time

import torch
from safetensors.torch import save_file

from engine.tracking import start_run

store_path, mode = sys.argv[1], sys.argv[2]
zoo = sys.argv[3] if len(sys.argv) > 3 else "logged-zoo"
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(40, 16), torch.nn.ReLU(), torch.nn.Linear(16, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
x, y = torch.randn(64, 40), torch.randint(0, 10, (64,))


def step_once() -> float:
    opt.zero_grad()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    return loss.item()


kwargs = dict(zoo=zoo, name=f"{mode}-run", config={"lr": 0.1, "seed": 7, "mode": mode}, arch="mlp",
              arch_kwargs={"width": 16, "depth": 1}, dataset="mnist1d", flush_every_s=0.05, heartbeat_s=0.2)
if mode == "noclose":
    run = start_run(store_path, **kwargs)
    run.log(0, train_loss=step_once())
    run.flush()
    sys.exit(0)

with start_run(store_path, **kwargs) as run:
    run.checkpoint(model, 0, train_loss=2.3)
    for step in range(1, 31):
        run.log(step, train_loss=step_once(), lr=0.1)
        if mode == "raise" and step == 5:
            raise RuntimeError("boom <b>*not markdown*</b>")
    run.checkpoint(model, 30, train_loss=0.5, test_acc=0.25)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, f"{store_path}/{run.run_id}.safetensors")
    if mode == "kill":
        run.flush(wait=True)  # both checkpoints are in the inbox before the test kills the script
        print(f"READY {run.run_id}", flush=True)
        step = 30
        while True:
            step += 1
            run.log(step, train_loss=step_once())
            time.sleep(0.001)
