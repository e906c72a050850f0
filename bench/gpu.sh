#!/usr/bin/env bash
# Every benchmark that has a CUDA path, in one run, with one table at the end.
#
#   bash bench/gpu.sh            # on a GPU machine: each script picks CUDA itself
#   BENCH_BUDGET_S=480 bash bench/gpu.sh
#
# Without a GPU it runs the same scripts on the CPU at reduced sizes (CI never runs it;
# it is here so the GPU run is one prepared command). Each script gets a time limit out
# of the budget (default 8 minutes in all); a script that fails or runs out of time is
# reported as such in the table and the rest still run. Reference packages (loss-landscapes,
# PyHessian, torch-cka: `pip install -e .[bench]`) are used where installed; a missing one
# shows as a failed row, not a crash of the suite.
set -u
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
BUDGET=${BENCH_BUDGET_S:-480}
OUT=${OUT:-bench/results/gpu}
mkdir -p "$OUT"
DEVICE=$($PY -c "import torch; print(torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'cpu')")
if [ "$DEVICE" = cpu ]; then SMALL=1; else SMALL=0; fi

# name | share of the budget (%) | command (run from the repository root, bench/ on the path)
ROWS=(
  "surface_41x41|25|bench/landscape_surface.py --threads 2 --res $([ $SMALL = 1 ] && echo 11 || echo 41) --repeats 2 --li-rows 1"
  "hessian_top|20|bench/hessian_top.py --threads 2 --repeats 2 --models $([ $SMALL = 1 ] && echo mlp100 || echo mlp100,mlp512,cnn)"
  "interpolation|15|bench/connectivity_interpolation.py --threads 2 --repeats 2 --out $OUT/connectivity_interpolation.txt"
  "population_K32|20|bench/population_training.py --k 32 --steps $([ $SMALL = 1 ] && echo 20 || echo 200) --repeats 2"
  "real_models|20|bench/real_models.py --quick"
)

printf '# bench/gpu.sh on %s, %s, budget %ss\n' "$DEVICE" "$(date -u '+%Y-%m-%d %H:%M UTC')" "$BUDGET" | tee "$OUT/summary.txt"
declare -a TABLE
for row in "${ROWS[@]}"; do
  IFS='|' read -r name share cmd <<<"$row"
  script=${cmd%% *}
  limit=$(( BUDGET * share / 100 ))
  if [ ! -f "$script" ]; then TABLE+=("$name|missing|0|$script is not in this tree"); continue; fi
  SECONDS=0
  PYTHONPATH="$PWD:$PWD/bench${PYTHONPATH:+:$PYTHONPATH}" timeout "$limit" $PY $cmd >"$OUT/$name.log" 2>&1
  rc=$?
  wall=$SECONDS
  case $rc in 0) status=ok ;; 124) status="timeout ${limit}s" ;; *) status="failed rc=$rc" ;; esac
  # the script's own closing lines: its summary (ratios) or the error
  last=$(grep -v '^\s*$' "$OUT/$name.log" | tail -n 1 | cut -c1-110)
  TABLE+=("$name|$status|$wall|$last")
done

{
  printf '\n%-16s %-14s %7s  %s\n' benchmark status wall_s "last line of its output (full logs in $OUT/)"
  for r in "${TABLE[@]}"; do
    IFS='|' read -r n s w l <<<"$r"
    printf '%-16s %-14s %7s  %s\n' "$n" "$s" "$w" "$l"
  done
} | tee -a "$OUT/summary.txt"
for r in "${TABLE[@]}"; do
  IFS='|' read -r n s _ _ <<<"$r"
  echo; echo "== $n ($s)"; sed -n '/summary/,$p' "$OUT/$n.log" | head -20
done | tee -a "$OUT/summary.txt"
