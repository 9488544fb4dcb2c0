#!/usr/bin/env bash
# Every DfM method from the same M0 at the same budget - 50k substitutes x 40 PGD steps, final iterates only, the
# same DtM (15 epochs) - for a non-robust and a robust MNIST LeNet M0, two seeds each; then Table 1/2 per method
# (`dfm report`) and, per M0 and seed, every D1 evaluated by every method's M1 (`dfm crosseval`).
#   bash bench/compare_methods.sh [RUNS_DIR]        # resumable: rerun the same command after a stop
set -euo pipefail
runs=${1:-runs/methods}
fit=(--config configs/fit/mnist_lenet.yaml --config configs/chain/mnist.yaml --config configs/budget/mnist.yaml)
same=(--extraction.num_samples 50000 --extraction.steps 40 --extraction.snapshot_steps null --distill_epochs 15
      --wandb.enabled false)
methods=(virtual_logits model_labels random_target_ce representation)
for m0 in nonrobust robust; do
  robust=(); [ "$m0" = robust ] && robust=(--config configs/robust/mnist.yaml --config configs/budget/mnist_robust.yaml)
  dfm chain "${fit[@]}" "${robust[@]}" --generations 0 --run_dir "$runs/$m0-M0"
  for seed in 0 1; do
    for method in "${methods[@]}"; do
      dfm chain "${fit[@]}" "${robust[@]}" "${same[@]}" --generations 1 --seed_everything "$seed" \
        --m0_ckpt_path "$runs/$m0-M0/gen0/model.ckpt" --extraction.method "$method" --run_dir "$runs/$m0-$method-s$seed"
    done
    data=$(printf '"%s",' "${methods[@]/#/$runs/$m0-}" | sed "s/,$//; s|\"\([^\"]*\)\"|\"\1-s$seed/gen1/data\"|g")
    ckpts=$(printf '"%s",' "${methods[@]/#/$runs/$m0-}" | sed "s/,$//; s|\"\([^\"]*\)\"|\"\1-s$seed/gen1/model.ckpt\"|g")
    dfm crosseval --datasets "[$data]" --checkpoints "[$ckpts]" --out_dir "$runs/$m0-virtual_logits-s$seed/crosseval"
  done
done
dfm report "$runs"/*-s0 "$runs"/*-s1 --out_dir "$runs/report"
