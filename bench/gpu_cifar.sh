#!/usr/bin/env bash
# Device-machine check for CIFAR-10 / VGG8: the non-robust chain M0 -> M2 and the robust chain M0 -> M1 side by side
# on one GPU, 100k extracted images per generation (the paper: 500k), bf16-mixed, 0 loader workers.
# Expects .gpuc/ (data/CIFAR10-jpeg, data/coco-substitute and the jsonargparse wheels) and $OUT.
# Usage: bash bench/gpu_cifar.sh SECONDS
set -u
budget=${1:-480}
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled DFM_DATA_DIR=$PWD/.gpuc/data
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpuc/whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
nvidia-smi -L; python3 -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'lightning', pl.__version__)"
common=(--wandb.enabled false --data.num_workers 0 --extraction.num_workers 0 --distill.num_workers 0
        --extraction.num_samples 100000 --distill.max_epochs 15
        --trainer "{precision: bf16-mixed, enable_progress_bar: false, enable_model_summary: false}")
timeout "$budget" python3 -m dfm_lightning.cli chain --config configs/cifar10_vgg8_chain.yaml --run_dir /tmp/runs/nr \
  --generations 2 --m0.max_epochs 30 "${common[@]}" > /tmp/nr.log 2>&1 &
timeout "$budget" python3 -m dfm_lightning.cli chain --config configs/cifar10_vgg8_robust_chain.yaml --run_dir /tmp/runs/r \
  --generations 1 --m0.max_epochs 20 "${common[@]}" > /tmp/r.log 2>&1 &
copy() {
  mkdir -p "$OUT/nr" "$OUT/r"
  for k in nr r; do
    cp /tmp/runs/$k/results.json "$OUT/$k/" 2>/dev/null
    cp /tmp/runs/$k/gen1/extracted.png "$OUT/$k/D1.png" 2>/dev/null
  done
  cp /tmp/runs/nr/gen2/extracted.png "$OUT/nr/D2.png" 2>/dev/null
}
while [ -n "$(jobs -r)" ]; do sleep 10; copy; done
copy
{ echo "== nr"; grep -E "\[chain\]|Error|error|Killed" /tmp/nr.log | tail -20; echo "== r"; grep -E "\[chain\]|Error|error|Killed" /tmp/r.log | tail -20; } > "$OUT/log.txt"
tail -n 5 /tmp/nr.log /tmp/r.log
cat "$OUT/log.txt"
