"""The loop-or-vmap choice (evaluator._run with how="measure") on its first points: two probes
of each, alternated, the shorter time of each compared; every point computed once.

Sleeps stand in for the work; the choices asserted have margins of 5x or more between them."""

import threading

import torch

from engine.probes.core import evaluator


def _fns(slow_loop_calls: int, loop_s: float, vmap_s: float):
    calls = {"loop": 0, "vmap": 0}

    def point(a):
        calls["loop"] += 1
        threading.Event().wait(loop_s * (20 if calls["loop"] <= slow_loop_calls else 1))  # a disturbed first probe
        return a * 2, a * 0

    def batched(a):  # under vmap: one call for the chunk
        calls["vmap"] += 1
        threading.Event().wait(vmap_s)
        return a * 2, a * 0

    return point, batched, calls


def test_a_disturbed_first_probe_is_measured_again_and_the_faster_kept(monkeypatch):
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "1")
    args = (torch.arange(1024.0),)  # probes of 4 points
    # the loop's first probe 40 ms, its second 2; vmap's 10: one probe each sent every point to vmap
    point, batched, calls = _fns(slow_loop_calls=4, loop_s=0.0005, vmap_s=0.01)
    loss, _, how = evaluator._run(point, batched, args, "measure", 8)
    assert how == "loop" and calls["vmap"] == 2 and calls["loop"] == 1024 - 8
    assert torch.equal(loss, args[0].double() * 2)


def test_vmap_kept_when_its_probes_are_faster(monkeypatch):
    monkeypatch.setenv("ZOOSCOPE_POINT_THREADS", "1")
    args = (torch.arange(1024.0),)
    point, batched, calls = _fns(slow_loop_calls=0, loop_s=0.004, vmap_s=0.002)  # 4 points: 16 ms against 2
    loss, _, how = evaluator._run(point, batched, args, "measure", 8)
    assert how == "vmap" and calls["loop"] == 8 and calls["vmap"] == 2 + (1024 - 16) // 8
    assert torch.equal(loss, args[0].double() * 2)
