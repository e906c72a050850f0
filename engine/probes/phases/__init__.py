"""Phase diagrams of a zoo: per-cell summaries over two hyperparameters, phase labels and
grokking steps; magnitude pruning and the three regimes of pruning."""

from .diagram import (
    PHASE_METRICS,
    GrokkingSteps,
    PhaseThresholds,
    axis_values,
    cell_table,
    classify_phases,
    default_thresholds,
    grokking_steps,
    yang_phase,
)
from .pruning import (
    PRUNING_REGIMES,
    Pruning,
    classify_regimes,
    fine_tune,
    prunable_names,
    prune,
    pruned_cell_table,
    pruned_rows,
    pruning_regime,
    temperature_effect,
)

__all__ = [
    "PHASE_METRICS",
    "PRUNING_REGIMES",
    "Pruning",
    "GrokkingSteps",
    "PhaseThresholds",
    "axis_values",
    "cell_table",
    "classify_phases",
    "classify_regimes",
    "default_thresholds",
    "fine_tune",
    "grokking_steps",
    "prunable_names",
    "prune",
    "pruned_cell_table",
    "pruned_rows",
    "pruning_regime",
    "temperature_effect",
    "yang_phase",
]
