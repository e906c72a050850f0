#!/usr/bin/env bash
# The resnet18 rows of the README on a GPU: bench/real_models.py with --device cuda.
# Falls back to the CPU (with a note) when torch sees no CUDA device, so it runs anywhere.
# Usage: bench/gpu_real_models.sh [extra real_models.py options]   (about 2-4 minutes on one modern GPU)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
DEVICE=$("$PY" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
THREADS=$(nproc)
"$PY" bench/real_models.py --device "$DEVICE" --threads "$THREADS" --repeats 3 "$@" | tee "bench/results/real_models_${DEVICE}.txt"
