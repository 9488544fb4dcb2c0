#!/usr/bin/env bash
# `bench/gpu.sh paper` rehearsed on the CPU before a device window is spent on it: on the device machine's software
# stack (Python 3.12, torch 2.11.0, Lightning 2.6.6, torchvision 0.26.0, torchmetrics 1.9.0; jsonargparse only from
# the carried wheels, no wandb), with every run shrunk by EXTRA. Two simulated windows: the first cut short at CUT
# seconds, its files unpacked and the non-robust chain carried into the second, which continues it to M5.
#
#   bash bench/gpu_rehearsal.sh [CUT]     # CUT default 200; about 10 minutes on 2 cores, plus a 5 GB venv
#                                         # ($VENV, default /tmp/dfm_device_venv) made the first time
#
# Works in a clone under /tmp (this checkout's docs/ and runs/ are left alone); the results end in $WORK/docs/results/gpu/paper/.
set -euo pipefail
repo=$(git rev-parse --show-toplevel) venv=${VENV:-/tmp/dfm_device_venv} work=${WORK:-/tmp/dfm_rehearsal}
if [ ! -x "$venv/bin/python3" ]; then
  py=; for c in python3.12 "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12; do "$c" -c '' 2>/dev/null && py=$c && break; done
  [ -n "$py" ] || { echo "no Python 3.12 here (the device machine's version); install one, or set VENV to a venv of it" >&2; exit 2; }
  "$py" -m venv "$venv"
  "$venv/bin/pip" install -q torch==2.11.0 torchvision==0.26.0 pytorch-lightning==2.6.6 torchmetrics==1.9.0 \
    numpy scikit-learn pillow matplotlib pyyaml
fi
rm -rf "$work" && git clone -q "$repo" "$work" && cd "$work"
cp "$repo/bench/gpu.sh" bench/  # the script as it is in the checkout, committed or not
export PATH=$venv/bin:$PATH CROSSEVAL_SAMPLES=256 SHARED=${SHARED:-$(cd "$repo/../shared/datasets" && pwd)}
bash bench/gpu.sh prepare cifar 2>&1 | { grep -v WARNING || true; }
export EXTRA="--trainer.max_epochs 1 --trainer.limit_train_batches 2 --trainer.limit_val_batches 1
  --extraction.num_samples 256 --extraction.shard_size 128 --extraction.steps 2 --distill_epochs 1
  --distill_data.val_size 64 --robustness.num_test_images 64 --robustness.steps 2"
window() {  # a fresh device machine: no installed wheels, no data, no run dirs
  rm -rf /tmp/site /tmp/dfm_data "$1" "$1.runs" && OUT=$1 RUNS=$1.runs bash bench/gpu.sh paper "$2" > "$1.log" 2>&1 || true
  ls "$1/paper"; }
echo "== window 1, cut at ${1:-200} s"; window /tmp/dfm_rehearsal_w1 "${1:-200}"
ls /tmp/dfm_rehearsal_w1/paper/cifar10.gen*.ckpt.part00 > /dev/null || { echo "window 1 left no chain to continue: cut it sooner" >&2; exit 1; }
bash bench/gpu.sh unpack /tmp/dfm_rehearsal_w1/paper
bash bench/gpu.sh prepare cifar cifar10 2>&1 | { grep -v WARNING || true; }
echo "== window 2"; window /tmp/dfm_rehearsal_w2 900
bash bench/gpu.sh unpack /tmp/dfm_rehearsal_w2/paper
cat docs/results/gpu/paper/cifar10/results.md docs/results/gpu/paper/cifar10/crosseval/crosseval.md
