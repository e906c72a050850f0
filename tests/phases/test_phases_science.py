"""Phase-diagram science on hand-made tables: axes, cells, thresholds, labels, the grokking step."""

import numpy as np
import pandas as pd
import pytest

from engine.config import ConfigError, load_sweep, parse_axis_expression
from engine.probes.phases import (
    PhaseThresholds,
    axis_values,
    cell_table,
    classify_phases,
    default_thresholds,
    grokking_steps,
    yang_phase,
)


def _runs():
    # 2 learning rates x 2 widths x 2 seeds; batch size swept too so lr/batch_size is a real ratio
    rows = []
    for lr in (0.1, 0.4):
        for width in (8, 32):
            for seed in (0, 1):
                rows.append({"run_id": f"r{lr}-{width}-{seed}", "hp_lr": lr, "hp_batch_size": 50, "hp_width": width,
                             "hp_seed": seed, "probe_hessian_top": 10 / lr + seed,
                             "probe_barrier_aligned": 1.0 / width, "probe_cka_mean": 0.5 + width / 100})
    return pd.DataFrame(rows)


def test_axis_ratio_product_and_constant():
    runs = _runs()
    np.testing.assert_allclose(axis_values(runs, "lr/batch_size"), runs["hp_lr"] / 50)
    np.testing.assert_allclose(axis_values(runs, "lr * width"), runs["hp_lr"] * runs["hp_width"])
    np.testing.assert_allclose(axis_values(runs.drop(columns="hp_batch_size"), "lr/batch_size",
                                           constants={"batch_size": 100}), runs["hp_lr"] / 100)


@pytest.mark.parametrize("expr, match", [
    ("lr/", r"a phase axis is a sweep axis, or 'a/b' or 'a\*b' of two; got 'lr/'"),
    ("lr+width", r"got 'lr\+width'"),
    ("lr/bsz", r"names 'bsz', which is not a sweep axis"),
])
def test_axis_expression_errors(expr, match):
    with pytest.raises(ValueError, match=match):
        parse_axis_expression(expr)


def test_axis_not_swept_nor_constant():
    with pytest.raises(ValueError, match=r"axis 'label_noise' is neither swept .* nor a known constant"):
        axis_values(_runs(), "label_noise")


def test_sweep_file_phases_table():
    sweep = load_sweep({"grid": {"lr": [0.1, 0.2], "width": [8, 16]},
                        "phases": {"temperature": "lr/batch_size", "load": "width"}})
    assert sweep.phases.names("temperature") == ["lr", "batch_size"]
    with pytest.raises(ConfigError, match=r"phases.load = 'depth' names no swept axis"):
        load_sweep({"grid": {"lr": [0.1]}, "phases": {"temperature": "lr", "load": "depth"}})
    with pytest.raises(ConfigError, match=r"phases.temperature: .*names 'rate'"):
        load_sweep({"grid": {"lr": [0.1]}, "phases": {"temperature": "rate", "load": "lr"}})


def test_cell_table_means_over_seeds():
    cells = cell_table(_runs(), "lr/batch_size", "width", ["probe_hessian_top", "probe_barrier_aligned", "missing"])
    assert len(cells) == 4 and (cells["n_runs"] == 2).all()
    row = cells[(cells["temperature"] == 0.1 / 50) & (cells["load"] == 8)].iloc[0]
    assert row["probe_hessian_top"] == pytest.approx(100.5)  # seeds add 0 and 1 to 10/lr
    assert row["probe_hessian_top_std"] == pytest.approx(np.std([100, 101], ddof=1))
    assert sorted(row["run_ids"]) == ["r0.1-8-0", "r0.1-8-1"]
    assert cells["missing"].isna().all()


def test_thresholds_and_labels():
    cells = pd.DataFrame({"hessian_top": [5.0, 1.0, 5.0, 1.0, np.nan],
                          "barrier_aligned": [0.5, 0.5, 0.01, 0.01, 0.01],
                          "cka_mean": [0.2, 0.2, 0.2, 0.9, 0.9]})
    out = classify_phases(cells, PhaseThresholds(sharpness=2.0, barrier=0.1, similarity=0.5))
    assert out["label"].tolist() == [
        "sharp · poorly connected · dissimilar", "flat · poorly connected · dissimilar",
        "sharp · well connected · dissimilar", "flat · well connected · similar", "? · well connected · similar"]
    assert out["phase"].tolist()[:4] == ["I", "II", "III", "IV-B"] and pd.isna(out["phase"].iloc[4])
    # moving a threshold moves the labels
    moved = classify_phases(cells, PhaseThresholds(10.0, 0.1, 0.1))
    assert moved["phase"].tolist()[:4] == ["II", "II", "IV-B", "IV-B"]


def test_default_thresholds_are_medians():
    cells = pd.DataFrame({"hessian_top": [1.0, 2.0, 9.0], "barrier_aligned": [0.1, 0.2, 0.3],
                          "cka_mean": [0.5, 0.6, 1]})
    t = default_thresholds(cells)
    assert (t.sharpness, t.barrier, t.similarity) == (2.0, 0.2, 0.6)
    with pytest.raises(ValueError, match=r"cells have no column 'cka'"):
        default_thresholds(cells, similarity_metric="cka")


def test_yang_phase_names():
    assert [yang_phase(s, p, c) for s, p, c in [(1, 1, 0), (0, 1, 1), (1, 0, 1), (0, 0, 0), (0, 0, 1)]] == \
        ["I", "II", "III", "IV-A", "IV-B"]


def test_grokking_step_on_synthetic_curves():
    steps = np.arange(0, 1000, 50)
    train = np.clip(steps / 200, 0, 1)  # memorises by step 200
    test = np.where(steps >= 700, 0.97, 0.05)  # jumps at step 700
    g = grokking_steps(steps, train, test, threshold=0.9)
    assert (g.memorized_step, g.generalized_step, g.delay, g.grokked) == (200, 700, 500, True)
    # generalising together with memorising is no grokking
    same = grokking_steps(steps, train, train, threshold=0.9)
    assert same.delay == 0 and not same.grokked
    # never generalises
    assert grokking_steps(steps, train, np.zeros(len(steps))).generalized_step is None
    with pytest.raises(ValueError, match="strictly increasing"):
        grokking_steps([0, 0, 1], [0, 0, 1], [0, 0, 1])
    with pytest.raises(ValueError, match=r"threshold must be in \(0, 1\]; got 1.5"):
        grokking_steps(steps, train, test, threshold=1.5)
