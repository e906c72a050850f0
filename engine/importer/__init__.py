"""Import what already exists: one weights file (``zooscope import``), a folder of checkpoints with its
logged metrics as one run (``zooscope import-run``), a published model zoo (``zooscope import-zoo``).

Weights load from safetensors, or from ``torch.load(..., weights_only=True)``: never an arbitrary
pickle. Every mismatch with the named architecture is explained, naming the file, before anything is
written; a run is recorded whole, in one catalog transaction, or not at all.
"""

from .commands import METRICS_FILES, arch_from_args, import_run_command, import_zoo_command
from .folder import WEIGHT_SUFFIXES, CheckpointFile, discover_checkpoints, read_manifest, step_from_name
from .metrics_file import MetricTable, metric_key, read_metrics
from .modelzoo import FORMATS, check_modelzoo, flatten_params, trial_folders
from .provenance import arch_label, file_sha256, import_provenance
from .trajectory import (
    ImportedCheckpoint,
    ImportedRun,
    Trajectory,
    build_for,
    check_trajectory,
    hand_over_runs,
    record_runs,
    record_runs_request,
    write_trajectory,
)
from .weights import (
    ImportedWeights,
    check_weight_values,
    evaluate_state,
    import_command,
    import_weights,
    load_weights,
    match_state_dict,
    record_import,
    record_import_request,
)

__all__ = [
    "METRICS_FILES",
    "CheckpointFile",
    "FORMATS",
    "ImportedCheckpoint",
    "ImportedRun",
    "ImportedWeights",
    "MetricTable",
    "Trajectory",
    "WEIGHT_SUFFIXES",
    "arch_from_args",
    "arch_label",
    "build_for",
    "check_modelzoo",
    "check_trajectory",
    "check_weight_values",
    "discover_checkpoints",
    "evaluate_state",
    "file_sha256",
    "flatten_params",
    "hand_over_runs",
    "import_command",
    "import_provenance",
    "import_run_command",
    "import_weights",
    "import_zoo_command",
    "load_weights",
    "match_state_dict",
    "metric_key",
    "read_manifest",
    "read_metrics",
    "record_import",
    "record_import_request",
    "record_runs",
    "record_runs_request",
    "step_from_name",
    "trial_folders",
    "write_trajectory",
]
