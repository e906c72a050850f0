"""Phase diagrams of a zoo: per-cell summaries over two hyperparameters, phase labels and
grokking steps."""

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

__all__ = [
    "PHASE_METRICS",
    "GrokkingSteps",
    "PhaseThresholds",
    "axis_values",
    "cell_table",
    "classify_phases",
    "default_thresholds",
    "grokking_steps",
    "yang_phase",
]
