"""A sweep that fails leaves nothing in the store: zoo, runs and job land together (issue 14, part 3)."""

import pytest

from engine.config import ConfigError


def _counts(st):
    return {t: n for t, n in st.table_counts().items() if t in ("zoo", "run", "job")}


def test_a_huge_seed_is_refused_before_anything_is_written(owner, tiny_sweep):
    st, disp = owner
    sweep = tiny_sweep().model_dump(mode="json")
    sweep["grid"] = {"seed": [0, 10**29]}
    with pytest.raises(ConfigError, match=r"grid point \(seed=100000000000000000000000000000\) is invalid: seed: Input "
                                          r"should be less than or equal to 4294967295"):
        disp.submit_sweep(sweep)
    assert _counts(st) == {"zoo": 0, "run": 0, "job": 0}


@pytest.mark.parametrize("failing", ["add_runs", "submit_job"])
def test_a_failed_insert_rolls_back_the_zoo_and_its_runs(owner, tiny_sweep, monkeypatch, failing):
    st, disp = owner

    def broken(*args, **kwargs):
        raise RuntimeError(f"{failing} failed")

    monkeypatch.setattr(st, failing, broken)
    with pytest.raises(RuntimeError, match=f"{failing} failed"):
        disp.submit_sweep(tiny_sweep())
    assert _counts(st) == {"zoo": 0, "run": 0, "job": 0}
    assert st.list_zoos().empty
    monkeypatch.undo()
    zoo_id, _ = disp.submit_sweep(tiny_sweep())  # the store is usable afterwards
    assert _counts(st) == {"zoo": 1, "run": 2, "job": 1} and st.get_zoo("tiny")["zoo_id"] == zoo_id
