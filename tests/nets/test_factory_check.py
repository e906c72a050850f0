"""The factory check the owner runs before queueing a sweep: in a child process, with a time and a memory limit."""

from __future__ import annotations

import os

import pytest
from plugin_fixtures import count_factory_checks

from engine.config import ArchSpec, ConfigError, SweepSpec
from engine.nets import FactoryError, check_factory_bounded, factory_checks_reused

HOSTILE = '''
import os
import time

from torch import nn


def forever(width=8):
    while True:
        time.sleep(0.05)


def hoards(width=8):
    hoard = []
    while True:
        hoard.append(bytearray(64 << 20))


def exits(width=8):
    os._exit(7)


def killed(width=8):
    print("about to be killed", flush=True)
    os.kill(os.getpid(), 9)


def chatty(width=8):
    print('{"ok": true}')  # what a factory prints never reads as the verdict
    raise RuntimeError("width must be even")


def _note_pid(pid):
    with open(os.path.join(os.path.dirname(__file__), "pids.txt"), "a") as fh:
        fh.write(f"{pid}\\n")


def forks(width=8):
    if os.fork() == 0:  # a grandchild with all the child's descriptors, the verdict's included
        _note_pid(os.getpid())
        time.sleep(300)
        os._exit(0)
    return nn.Linear(4, width)


def spawns(width=8):
    import subprocess

    _note_pid(subprocess.Popen(["sleep", "300"]).pid)
    return nn.Linear(4, width)


def escapes(width=8):
    if os.fork() == 0:  # leaves the process group: the kill at the end of the check does not reach it
        os.setsid()
        _note_pid(os.getpid())
        while True:
            pass
    return nn.Linear(4, width)


def fakes_verdict(width=8):
    mine = os.readlink("/proc/self/fd/2")
    for fd in os.listdir("/proc/self/fd"):
        try:
            where = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if int(fd) > 2 and where != mine and (where.startswith("pipe:") or "(deleted)" in where):
            os.write(int(fd), b"[" * 100_000 + b"\\n")
    os._exit(0)


def floods(width=8):
    print("x" * (4 << 20))
    return nn.Linear(4, width)


def fine(width=8):
    print("building")
    return nn.Linear(4, width)
'''


@pytest.fixture
def hostile(plugin_dir):
    (plugin_dir / "hostile.py").write_text(HOSTILE)
    return plugin_dir


def test_a_factory_that_never_returns_is_stopped(hostile):
    with pytest.raises(FactoryError, match=r"factory 'hostile:forever' did not finish its check within 3 s and "
                                           r"was stopped .*FACTORY_CHECK_TIMEOUT_S"):
        check_factory_bounded(ArchSpec(factory="hostile:forever"), timeout_s=3)


def test_a_factory_that_allocates_without_bound_runs_out_of_its_own_memory(hostile):
    with pytest.raises(FactoryError, match=r"factory 'hostile:hoards' raised MemoryError.* the check may use at "
                                           r"most 2 GiB .*FACTORY_CHECK_MEMORY_BYTES"):
        check_factory_bounded(ArchSpec(factory="hostile:hoards"), memory_bytes=2 << 30)


def test_a_factory_that_exits_gives_no_verdict(hostile):
    with pytest.raises(FactoryError, match=r"factory 'hostile:exits': its check ended with exit status 7 and no "
                                           r"verdict"):
        check_factory_bounded(ArchSpec(factory="hostile:exits"))


def test_a_check_killed_by_a_signal_says_so_with_what_it_printed(hostile):
    with pytest.raises(FactoryError, match=r"factory 'hostile:killed': its check was killed by SIGKILL .*out of "
                                           r"memory\): about to be killed"):
        check_factory_bounded(ArchSpec(factory="hostile:killed"))


def test_the_child_reports_what_the_in_process_check_reports(hostile):
    """Same messages as check_factory, whatever the factory prints; a good factory passes."""
    with pytest.raises(FactoryError, match=r"^factory 'hostile:chatty' raised RuntimeError: width must be even$"):
        check_factory_bounded(ArchSpec(factory="hostile:chatty"))
    with pytest.raises(FactoryError, match=r"factory 'my_models:WideNet': kwargs \['depth'\] do not fit"):
        check_factory_bounded(ArchSpec(factory="my_models:WideNet", kwargs={"depth": 3}))
    check_factory_bounded(ArchSpec(factory="hostile:fine"))
    check_factory_bounded(ArchSpec(name="mlp"))  # a built-in: nothing to run


def test_refusals_that_need_no_user_code_start_no_process(plugin_dir, monkeypatch):
    import subprocess

    def no_child(*args, **kwargs):
        raise AssertionError("a child process was started")

    monkeypatch.setattr(subprocess, "Popen", no_child)
    with pytest.raises(FactoryError, match=r"asks for pretrained weights"):
        check_factory_bounded(ArchSpec(factory="my_models:ask_weights", kwargs={"weights": "DEFAULT"}))
    with pytest.raises(FactoryError, match=r"no_such_models"):
        check_factory_bounded(ArchSpec(factory="no_such_models:Net"))


def test_queueing_a_sweep_checks_its_factory_in_the_child(hostile, monkeypatch):
    """check_registered, which the CLI, the dispatcher and the dashboard call, takes the bounded path."""
    from engine.nets import factory_check
    from engine.train import check_registered

    monkeypatch.setattr(factory_check, "FACTORY_CHECK_TIMEOUT_S", 2.0)
    sweep = SweepSpec.model_validate({"base": {"dataset": {"name": "moons"}, "arch": {"factory": "hostile:forever"}}})
    with pytest.raises(ConfigError, match=r"^base.arch.factory: factory 'hostile:forever' did not finish its check "
                                          r"within 2 s"):
        check_registered(sweep)


def _gone(pid: int, within_s: float = 10) -> bool:
    """Whether ``pid`` has ended (exited, or a zombie nobody reaped yet); waits up to ``within_s`` for it."""
    import time

    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] in ("Z", "X"):
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.parametrize("factory", ["hostile:forks", "hostile:spawns"])
def test_what_a_factory_starts_ends_with_its_check(hostile, factory):
    """A forked grandchild holding the verdict's descriptor does not hold the check up to its time limit,
    and nothing the factory left running in its process group outlives the check."""
    try:
        check_factory_bounded(ArchSpec(factory=factory), timeout_s=20)
        pids = _recorded_pids(hostile)
        assert pids and all(_gone(pid) for pid in pids)
    finally:
        _kill_recorded(hostile)


def test_a_forged_verdict_nested_too_deep_is_no_verdict(hostile):
    """What the user's code writes where the verdict goes: the parent raises a FactoryError, not RecursionError."""
    with pytest.raises(FactoryError, match=r"factory 'hostile:fakes_verdict': its check ended with exit status 0 "
                                           r"and no verdict"):
        check_factory_bounded(ArchSpec(factory="hostile:fakes_verdict"))


def test_what_a_factory_prints_is_bounded(hostile, monkeypatch):
    from engine.nets import factory_check

    monkeypatch.setattr(factory_check, "FACTORY_CHECK_OUTPUT_BYTES", 1 << 20)
    with pytest.raises(FactoryError, match=r"^factory 'hostile:floods' raised OSError: \[Errno 27\] File too large"):
        check_factory_bounded(ArchSpec(factory="hostile:floods"))


def test_a_process_that_leaves_the_group_still_cannot_compute_for_ever(hostile, monkeypatch):
    """The limit not reached: a daemon the factory starts in a session of its own outlives the check.
    It inherits the check's CPU limit, so a spinning one is killed (SIGXCPU) all the same."""
    from engine.nets import factory_check

    monkeypatch.setattr(factory_check, "FACTORY_CHECK_CPU_S", 5)  # torch imports in ~2
    try:
        check_factory_bounded(ArchSpec(factory="hostile:escapes"), timeout_s=20)
        pids = _recorded_pids(hostile)
        assert pids and all(_gone(pid, within_s=30) for pid in pids)
    finally:
        _kill_recorded(hostile)


def _recorded_pids(folder) -> list[int]:
    """The processes the hostile factory recorded starting."""
    return [int(line) for line in (folder / "pids.txt").read_text().split()]


def _kill_recorded(folder) -> None:
    """Whatever the test's factory left running, killed (a failing test must not leak it)."""
    import signal

    for pid in _recorded_pids(folder):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_passed_check_is_reused_in_one_submission_until_its_file_changes(plugin_dir, monkeypatch):
    """A form validates, then the queue checks again: one child. An edited module is checked again (here it now
    fails, which a reused pass would hide), and nothing is reused outside the block."""
    started = count_factory_checks(monkeypatch)
    spec = ArchSpec(factory="my_models:WideNet", kwargs={"width": 4})
    module = plugin_dir / "my_models.py"
    original = module.read_text()
    with factory_checks_reused():
        check_factory_bounded(spec)
        check_factory_bounded(spec)
        assert len(started) == 1
        module.write_text(original + "\nraise RuntimeError('edited between validation and queueing')\n")
        with pytest.raises(FactoryError, match="edited between validation and queueing"):
            check_factory_bounded(spec)
        assert len(started) == 2
    module.write_text(original)  # the content the block's pass was for
    check_factory_bounded(spec)
    assert len(started) == 3


def test_a_file_added_to_a_plugin_folder_is_checked_again(plugin_dir, monkeypatch):
    """A module the factory tried to import and did not find (an optional import) may appear between
    validation and queueing: any change of the plugin folders' code means a new check."""
    started = count_factory_checks(monkeypatch)
    spec = ArchSpec(factory="my_models:WideNet", kwargs={"width": 4})
    with factory_checks_reused():
        check_factory_bounded(spec)
        (plugin_dir / "my_optional_extras.py").write_text("WIDTH = 3\n")
        check_factory_bounded(spec)
        check_factory_bounded(spec)
    assert len(started) == 2


def test_plugin_folders_past_the_snapshot_bounds_are_never_reused(plugin_dir, monkeypatch):
    """Too many entries to hash: every check runs (never a pass trusted for code not read)."""
    from engine.nets import factory_check

    monkeypatch.setattr(factory_check, "_SNAPSHOT_ENTRIES", 1)
    started = count_factory_checks(monkeypatch)
    spec = ArchSpec(factory="my_models:WideNet", kwargs={"width": 4})
    with factory_checks_reused():
        check_factory_bounded(spec)
        check_factory_bounded(spec)
    assert len(started) == 2
