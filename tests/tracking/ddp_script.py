"""Two gloo ranks on this machine (file rendezvous, loopback), each calling start_run; run by the tests.

    python ddp_script.py WORKDIR
"""

from __future__ import annotations

import os
import sys

import torch.distributed as dist
import torch.multiprocessing as mp


def work(rank: int, world: int, workdir: str) -> None:
    os.environ["GLOO_SOCKET_IFNAME"] = "lo"
    dist.init_process_group("gloo", init_method=f"file://{workdir}/rendezvous", rank=rank, world_size=world)
    from engine.tracking import start_run

    with start_run(f"{workdir}/store", zoo="ddp", name="ddp-run", arch="mlp", dataset="mnist1d") as run:
        run.log(0, train_loss=float(rank))
        print(f"rank {rank}: {type(run).__name__}", flush=True)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(work, args=(2, sys.argv[1]), nprocs=2)
