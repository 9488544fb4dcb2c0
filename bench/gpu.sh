#!/usr/bin/env bash
# Every GPU experiment in one script. Two steps:
#
#   bash bench/gpu.sh prepare                      # here: .gpu/ = wheels the device machine lacks + the offline data
#   bash bench/gpu.sh EXPERIMENT SECONDS [ARGS]    # there (carry .gpu): results under $OUT/EXPERIMENT/
#
# Experiments (each chain is resumable: a run cut short by SECONDS loses nothing already written in its run dir):
#   throughput             DfM image-steps/s per architecture, fp32 vs bf16-mixed, framework vs a bare PGD loop,
#                          and the FLOP rate reached (bench/throughput.py)
#   scaling [DEVICES]      DfM image-steps/s with 1, 2, ... DDP processes, one GPU each, MNIST lenet_wide
#                          (bench/ddp_scaling.py; DEVICES default 1, e.g. 1,2,4,8 on a machine with 8 GPUs)
#   mnist                  both full-scale MNIST chains (500k images per generation), side by side
#   cifar                  both full-scale CIFAR-10 VGG8 chains, side by side
#   nimg NR_M0 R_M0 [N]    number-of-images ablation from a non-robust M0 (one D1 of N, default 500k; students on all
#                          of it x 10 epochs vs its first 50k at equal DtM sample-steps) + the robust chain from R_M0
#   table3 [SRC...]        the paper's Table 3: D1 from M0 of each SRC (vgg16 vgg19 resnet18), students of
#                          vgg16 vgg19 resnet18 resnet50
# Run dirs live under $RUNS (default /tmp/dfm_runs): a rerun in the same machine continues there.
set -u
exp=${1:?usage: bash bench/gpu.sh prepare | EXPERIMENT SECONDS [ARGS]}
if [ "$exp" = prepare ]; then
  shared=${SHARED:-../shared/datasets}
  mkdir -p .gpu/whl .gpu/data && grep -qx '/.gpu/' .git/info/exclude || echo '/.gpu/' >> .git/info/exclude
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 -d .gpu/whl jsonargparse typeshed-client docstring-parser importlib-resources wandb
  for d in MNIST FashionMNIST; do mkdir -p ".gpu/data/$d/raw"; for f in "$shared/$d/raw/"*-ubyte; do
    gzip -c "$f" > ".gpu/data/$d/raw/$(basename "$f").gz"; done; done
  cp -r "$shared/CIFAR10-jpeg" "$shared/coco-substitute" .gpu/data/
  du -sh .gpu; exit
fi
budget=${2:?seconds}; shift 2
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled DFM_DATA_DIR=/tmp/dfm_data
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
mkdir -p "$DFM_DATA_DIR" && cp -r .gpu/data/CIFAR10-jpeg .gpu/data/coco-substitute "$DFM_DATA_DIR/"
for f in .gpu/data/*/raw/*.gz; do rel=${f#.gpu/data/}; mkdir -p "$DFM_DATA_DIR/$(dirname "$rel")"
  gunzip -c "$f" > "$DFM_DATA_DIR/${rel%.gz}"; done
runs=${RUNS:-/tmp/dfm_runs}; out=${OUT:-gpu_out}/$exp; mkdir -p "$runs" "$out"
nvidia-smi -L; python3 -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'lightning', pl.__version__)"
quiet=(--wandb.enabled false --trainer.enable_progress_bar false --trainer.enable_model_summary false)
# one chain in the background, stopped at the budget; its log and results are copied to $out as they appear
chain() { local name=$1; shift
  timeout -k 10 "$((budget - SECONDS))" python3 -m dfm_lightning.cli chain "$@" --run_dir "$runs/$name" "${quiet[@]}" \
    > "$out/$name.log" 2>&1 & }
collect() { for d in "$runs"/*/; do n=$(basename "$d"); mkdir -p "$out/$n"
  cp "$d"results.json "$d"results.md "$d"accuracy.png "$out/$n/" 2>/dev/null
  for g in "$d"gen*/extracted.png; do [ -f "$g" ] && cp "$g" "$out/$n/D$(basename "$(dirname "$g")" | tr -dc 0-9).png"; done; done; }
MNIST=(--config configs/fit/mnist_lenet.yaml --config configs/chain/mnist.yaml)
CIFAR=(--config configs/fit/cifar10_vgg8.yaml --config configs/chain/cifar10.yaml --data.num_workers 0
       --extraction.num_workers 0 --distill_data.num_workers 0)  # loader workers crashed on a small /dev/shm
case $exp in
  throughput) timeout "$budget" python3 bench/throughput.py --archs lenet,vgg8,vgg16,resnet18,resnet50 \
                --num_samples 40000 --shard_size 10000 --steps 20 --precisions 32-true,bf16-mixed \
                --out "$out/throughput.json" ;;
  scaling) timeout "$budget" python3 bench/ddp_scaling.py --accelerator gpu --devices "${3:-1}" \
             --num_samples 500000 --shard_size 25000 --out "$out/scaling.json" ;;
  mnist) chain mnist "${MNIST[@]}"; chain mnist_robust "${MNIST[@]}" --config configs/robust/mnist.yaml ;;
  cifar) chain cifar10 "${CIFAR[@]}"; chain cifar10_robust "${CIFAR[@]}" --config configs/robust/cifar10.yaml ;;
  nimg)
    nr_m0=$1; r_m0=$2; n=${3:-500000}
    epochs=$(( (10 * (n - 5000) + 25000) / 50000 ))  # the 50k student gets the full student's DtM sample-steps
    chain nimg_all "${MNIST[@]}" --generations 1 --m0_ckpt_path "$nr_m0" --extraction.num_samples "$n"
    chain mnist_robust "${MNIST[@]}" --config configs/robust/mnist.yaml --m0_ckpt_path "$r_m0"
    # the 50k student reuses nimg_all's M0 and D1 (same settings, so the chain resumes from them)
    (until [ -f "$runs/nimg_all/gen1/data/manifest.json" ]; do sleep 5; [ $SECONDS -lt "$budget" ] || exit; done
     mkdir -p "$runs/nimg_50k/gen1" && cp -r "$runs/nimg_all/gen0" "$runs/nimg_50k/" && cp -r "$runs/nimg_all/gen1/data" "$runs/nimg_50k/gen1/"
     chain nimg_50k "${MNIST[@]}" --generations 1 --m0_ckpt_path "$nr_m0" --extraction.num_samples "$n" \
       --distill_data.max_samples 50000 --distill_epochs "$epochs"; wait) & ;;
  table3)
    for src in "${@:-vgg16 vgg19 resnet18}"; do
      timeout -k 10 "$((budget - SECONDS))" bash -c "set -e
        python3 -m dfm_lightning.cli chain ${CIFAR[*]} --generations 1 --model.arch $src --run_dir $runs/${src}_to_${src} ${quiet[*]}
        for dst in vgg16 vgg19 resnet18 resnet50; do [ \$dst = $src ] && continue
          python3 -m dfm_lightning.cli chain ${CIFAR[*]} --generations 1 --m0_ckpt_path $runs/${src}_to_${src}/gen0/model.ckpt \
            --distill.arch \$dst --run_dir $runs/${src}_to_\$dst ${quiet[*]}; done" > "$out/table3_$src.log" 2>&1
    done ;;
  *) echo "unknown experiment $exp" >&2; exit 2 ;;
esac
while [ -n "$(jobs -r)" ]; do sleep 10; collect; done
collect
for f in "$out"/*.log; do [ -f "$f" ] && { echo "== $f"; grep -E "\[chain\]|Error|error" "$f" | tail -12; }; done | tee "$out/summary.txt"
