#!/usr/bin/env bash
# Every DfM method from the same M0 at the same budget - 50k substitutes x 40 PGD steps, final iterates only, the
# same DtM (15 epochs) - for a non-robust and a robust MNIST LeNet M0, two seeds each; then Table 1/2 per method
# (`dfm report`) and, per M0 and seed, every D1 evaluated by every method's M1 (`dfm crosseval`).
#   bash bench/compare_methods.sh [RUNS_DIR [KIND...]]     # KIND: nonrobust, robust (default both), bn
# KIND bn: a non-robust lenet_wide with batch norm as M0 (8 epochs), and the methods that tell what matching its
# batch-norm statistics adds (bn_statistics = random_target_ce + that term; model_labels: no PGD), robustness
# on 1000 test images. SEEDS (default "0 1"; empty: M0 only) runs a subset of the seeds, e.g. one process per seed
# once M0 is trained.
# Resumable: rerun the same command after a stop. M0 is trained by the chain unless M0_NONROBUST / M0_ROBUST name a
# checkpoint (or model source file) to start from. The two kinds are independent: on a 2-core machine run them as
# two processes of one thread each, then once more without KIND for the report:
#   M0_NONROBUST=docs/results/gpu/mnist_lenet_m0_h200.ckpt OMP_NUM_THREADS=1 bash bench/compare_methods.sh runs/methods nonrobust &
#   M0_ROBUST=docs/results/gpu/mnist_lenet_robust_m0_h200.ckpt OMP_NUM_THREADS=1 bash bench/compare_methods.sh runs/methods robust
set -euo pipefail
runs=${1:-runs/methods}
kinds=("${@:2}"); [ ${#kinds[@]} -eq 0 ] && kinds=(nonrobust robust)
fit=(--config configs/fit/mnist_lenet.yaml --config configs/chain/mnist.yaml --config configs/budget/mnist.yaml)
same=(--extraction.num_samples 50000 --extraction.steps 40 --extraction.snapshot_steps null --distill_epochs 15
      --wandb.enabled false)
for m0 in "${kinds[@]}"; do
  methods=(virtual_logits model_labels random_target_ce representation)
  overlay=(); [ "$m0" = robust ] && overlay=(--config configs/robust/mnist.yaml --config configs/budget/mnist_robust.yaml)
  [ "$m0" = bn ] && overlay=(--model.arch lenet --model.arch_kwargs "{convs: [16, 32], fcs: [256], batch_norm: true}"
    --trainer.max_epochs 8) && methods=(bn_statistics random_target_ce model_labels)
  evals=(); [ "$m0" = bn ] && evals=(--robustness.num_test_images 1000)  # (its M0's own run: the budget's 5120)
  given=M0_${m0^^}
  if [ -n "${!given:-}" ]; then m0_ckpt=${!given}; else
    dfm chain "${fit[@]}" "${overlay[@]}" --generations 0 --run_dir "$runs/$m0-M0"
    m0_ckpt=$runs/$m0-M0/gen0/model.ckpt
  fi
  for seed in ${SEEDS-0 1}; do
    for method in "${methods[@]}"; do
      dfm chain "${fit[@]}" "${overlay[@]}" "${same[@]}" "${evals[@]}" --generations 1 --seed_everything "$seed" \
        --m0_ckpt_path "$m0_ckpt" --extraction.method "$method" --run_dir "$runs/$m0-$method-s$seed"
    done
    data=$(printf '"%s",' "${methods[@]/#/$runs/$m0-}" | sed "s/,$//; s|\"\([^\"]*\)\"|\"\1-s$seed/gen1/data\"|g")
    ckpts=$(printf '"%s",' "${methods[@]/#/$runs/$m0-}" | sed "s/,$//; s|\"\([^\"]*\)\"|\"\1-s$seed/gen1/model.ckpt\"|g")
    [ -f "$runs/$m0-${methods[0]}-s$seed/crosseval/crosseval.json" ] ||
      dfm crosseval --datasets "[$data]" --checkpoints "[$ckpts]" --out_dir "$runs/$m0-${methods[0]}-s$seed/crosseval"
  done
done
[ $# -gt 1 ] || dfm report "$runs"/*-s0 "$runs"/*-s1 --out_dir "$runs/report"
