#!/usr/bin/env bash
# How reproducible is a chain on the CPU? Runs the quickstart REPEATS times at each thread count and prints every
# run's accuracies (M0..M3, clean and eps=1), so the variation across runs and thread counts can be read off.
#   bash bench/reproducibility.sh [REPEATS=2] [THREADS="1 2"] [OUT=runs/reproducibility]
set -euo pipefail
repeats=${1:-2}; threads=${2:-"1 2"}; out=${3:-runs/reproducibility}
for t in $threads; do
  for r in $(seq 1 "$repeats"); do
    dir="$out/threads${t}_run${r}"
    mkdir -p "$out"; rm -rf "$dir"  # a fresh chain each time: a rerun into the same dir would only reload the results
    start=$SECONDS
    OMP_NUM_THREADS=$t dfm chain --config configs/quickstart.yaml --run_dir "$dir" --wandb.enabled false \
      --trainer.enable_progress_bar false > "$dir.log" 2>&1
    python3 - "$dir" "$t" "$r" "$((SECONDS - start))" <<'PY'
import json, sys
d, t, r, s = sys.argv[1:]
gens = json.load(open(f"{d}/results.json"))["generations"]
print(f"threads={t} run={r} ({s} s): " + "  ".join(
    f"M{g['generation']} {100 * g['test_accuracy']:.2f}/{100 * g['robust_accuracy']['1']:.1f}" for g in gens))
PY
  done
done
