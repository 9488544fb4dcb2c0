#!/usr/bin/env bash
# The device-machine check: GPU extraction throughput (fp32 vs bf16-mixed) and both full-scale MNIST chains
# (500k images per generation), run side by side on one GPU. Expects .gpu/ (gzipped MNIST + Fashion-MNIST,
# jsonargparse wheels) beside the repo, and $OUT for results. Usage: bash bench/gpu_check.sh SECONDS
set -u
budget=${1:-480}
source bench/gpu_mnist_env.sh
nvidia-smi -L; python3 -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'lightning', pl.__version__)"
timeout 90 python3 bench/extraction_throughput.py --out "$OUT/throughput.json" 2>&1 | grep '^{'
mkdir -p "$OUT/nr" "$OUT/r"
common=(--wandb.enabled false --trainer "{enable_progress_bar: false, enable_model_summary: false}")
timeout "$budget" python3 -m dfm_lightning.cli chain --config configs/mnist_lenet_chain.yaml --run_dir /tmp/runs/nr "${common[@]}" > /tmp/nr.log 2>&1 &
timeout "$budget" python3 -m dfm_lightning.cli chain --config configs/mnist_lenet_robust_chain.yaml --run_dir /tmp/runs/r "${common[@]}" > /tmp/r.log 2>&1 &
copy() { for k in nr r; do cp /tmp/runs/$k/results.json /tmp/runs/$k/accuracy.png "$OUT/$k/" 2>/dev/null; cp /tmp/runs/$k/gen0/model.ckpt "$OUT/$k/m0.ckpt" 2>/dev/null; done; }
while [ -n "$(jobs -r)" ]; do sleep 15; copy; done
copy
{ echo "== nr"; grep -E "\[chain\]|Error|error" /tmp/nr.log | tail -20; echo "== r"; grep -E "\[chain\]|Error|error" /tmp/r.log | tail -20; } > "$OUT/log.txt"
tail -5 /tmp/nr.log /tmp/r.log
cat "$OUT/log.txt"
