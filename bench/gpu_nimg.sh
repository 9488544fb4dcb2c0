#!/usr/bin/env bash
# Device check, session 4, two jobs side by side on one GPU, from M0 checkpoints trained on the CPU:
# (1) a clean number-of-images ablation at the paper's scale: one D1 of 500k substitutes extracted from a non-robust
#     M0, then two students with the same DtM sample-steps (~5M): all 495k training samples x 10 epochs (the full
#     config) and the first 50k x 100 epochs;
# (2) the full-scale robust MNIST chain from a robust M0, as far as the time allows.
# Expects .gpu/ as bench/gpu_check.sh does, and $OUT for results.
# Usage: bash bench/gpu_nimg.sh SECONDS NONROBUST_M0.ckpt ROBUST_M0.ckpt [D1_SIZE (default 500000)]
set -u
budget=${1:-480}; nr_m0=$2; r_m0=$3; n=${4:-500000}
epochs=$(( (10 * (n - 5000) + 25000) / 50000 ))  # the small student gets the big one's DtM sample-steps
source bench/gpu_mnist_env.sh
rm -rf /tmp/runs  # a run dir left by an earlier call with other settings would be refused
nvidia-smi -L
common=(--wandb.enabled false --trainer "{enable_progress_bar: false, enable_model_summary: false}")
chain() { timeout -k 10 "$((budget - SECONDS))" python3 -m dfm_lightning.cli chain "$@" "${common[@]}"; }  # after --config
chain --config configs/mnist_lenet_chain.yaml --run_dir /tmp/runs/n500k --generations 1 --m0.ckpt_path "$nr_m0" \
  --extraction.num_samples "$n" > /tmp/n500k.log 2>&1 &
chain --config configs/mnist_lenet_robust_chain.yaml --run_dir /tmp/runs/r --m0.ckpt_path "$r_m0" > /tmp/r.log 2>&1 &
(until [ -f /tmp/runs/n500k/gen1/data/manifest.json ] && [ -f /tmp/runs/n500k/gen0/eval.json ]; do
   sleep 5; [ $SECONDS -lt "$budget" ] || exit; done
 mkdir -p /tmp/runs/n50k/gen1 && cp -r /tmp/runs/n500k/gen0 /tmp/runs/n50k/ && cp -r /tmp/runs/n500k/gen1/data /tmp/runs/n50k/gen1/
 chain --config configs/mnist_lenet_chain.yaml --run_dir /tmp/runs/n50k --generations 1 --m0.ckpt_path "$nr_m0" \
   --extraction.num_samples "$n" --distill.max_samples 50000 --distill.max_epochs "$epochs" > /tmp/n50k.log 2>&1) &
copy() { for k in n500k n50k r; do mkdir -p "$OUT/$k"; cp /tmp/runs/$k/results.json "$OUT/$k/" 2>/dev/null; done
         cp /tmp/runs/r/gen1/extracted.png "$OUT/r/D1.png" 2>/dev/null; }
while [ -n "$(jobs -r)" ]; do sleep 10; copy; done
copy
for k in n500k n50k r; do echo "== $k"; grep -E "\[chain\]|Error" /tmp/$k.log | tail -12; done | tee "$OUT/log.txt"
