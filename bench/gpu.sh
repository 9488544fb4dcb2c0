#!/usr/bin/env bash
# Every GPU experiment in one script. Two steps:
#
#   bash bench/gpu.sh prepare [cifar [RUN]]        # here: .gpu/ = wheels the device machine lacks + the offline data
#   bash bench/gpu.sh EXPERIMENT SECONDS [ARGS]    # there (carry .gpu): results under $OUT/EXPERIMENT/
#   bash bench/gpu.sh unpack FILES_AT              # here: each returned RUN.tgz -> docs/results/gpu/paper/RUN/,
#                                                  #   a returned checkpoint -> runs/gpu_handover/RUN/
#
# Experiments (each chain is resumable: a run cut short by SECONDS loses nothing already written in its run dir):
#   throughput             DfM image-steps/s per architecture, eager vs the fast path (with and without compile),
#                          framework vs a bare PGD loop,
#                          and the FLOP rate reached (bench/throughput.py)
#   scaling [DEVICES]      DfM image-steps/s with 1, 2, ... DDP processes, one GPU each, MNIST lenet_wide
#                          (bench/ddp_scaling.py; DEVICES default 1, e.g. 1,2,4,8 on a machine with 8 GPUs)
#   mnist                  both full-scale MNIST chains (500k images per generation), side by side
#   cifar                  both full-scale CIFAR-10 VGG8 chains, side by side
#   nimg NR_M0 R_M0 [N]    number-of-images ablation from a non-robust M0 (one D1 of N, default 500k; students on all
#                          of it x 10 epochs vs its first 50k at equal DtM sample-steps) + the robust chain from R_M0
#   table3 [SRC...]        the paper's Table 3: D1 from M0 of each SRC (vgg16 vgg19 resnet18), students of
#                          vgg16 vgg19 resnet18 resnet50
#   recipes [NAMES]        CIFAR-10 VGG8 M0 candidates (batch size, lr, epochs; robust ones too) scored on a held-out
#                          5k slice of the training set, then DtM candidates on a D1 of 100k from the best one,
#                          scored on a held-out slice of D1 (bench/cifar_recipes.py; NAMES: a comma-separated subset)
#   paper [SKIP...]        the CIFAR-10 half in one window: both VGG8 chains (500k images x 5 generations) side by
#                          side, then Table 4 (each chain's D(g) on its M(g')), then Table 3 while time is left.
#                          Comes back as $OUT/paper/{cifar10,cifar10_robust,table3}.tgz (results.json/md, eval.json,
#                          figures, crosseval, logs; packed again every 10 s, so a window cut short returns every
#                          finished generation) + summary.txt, and for each unfinished chain its newest finished
#                          model as RUN.genG.ckpt.part00/01 (a VGG8 checkpoint, 17 MiB, is over the 16 MiB a returned
#                          file may have). A later window skips the runs named in SKIP (complete already).
# Continuing a chain cut short: `unpack` reassembles its checkpoint under runs/gpu_handover/RUN/ (with the chain's
# eval.json files), `prepare cifar [RUN]` carries one such chain (64 MiB a call: one checkpoint fits beside the
# substitutes, with the CIFAR-10 test set alone), and `paper` then continues only that chain from generation G+1.
# Run dirs live under $RUNS (default /tmp/dfm_runs): a rerun in the same machine continues there.
set -u
exp=${1:?usage: bash bench/gpu.sh prepare | EXPERIMENT SECONDS [ARGS]}
if [ "$exp" = prepare ]; then
  shared=${SHARED:-../shared/datasets}
  run=$(ls -d runs/gpu_handover/${3:-*}/ 2>/dev/null | head -1)  # a chain cut short: continue it (one fits)
  [ -z "${3:-}" ] || [ -n "$run" ] || { echo "no chain to continue in runs/gpu_handover/$3 (\`unpack\` puts one there)" >&2; exit 2; }
  rm -rf .gpu && mkdir -p .gpu/whl .gpu/data && { grep -qx '/.gpu/' .git/info/exclude || echo '/.gpu/' >> .git/info/exclude; }
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux2014_x86_64 -d .gpu/whl jsonargparse typeshed-client docstring-parser importlib-resources \
    $([ "${2:-}" = cifar ] || echo wandb)  # the paper run logs no W&B (and the 64 MiB a device call carries is tight)
  [ "${2:-}" = cifar ] || for d in MNIST FashionMNIST; do mkdir -p ".gpu/data/$d/raw"; for f in "$shared/$d/raw/"*-ubyte; do
    gzip -c "$f" > ".gpu/data/$d/raw/$(basename "$f").gz"; done; done
  cp -r "$shared/coco-substitute" .gpu/data/
  if [ "${2:-}" = cifar ] && [ -n "$run" ]; then
    mkdir -p .gpu/handover .gpu/data/CIFAR10-jpeg && cp -r "$run" .gpu/handover/
    # its M0 exists: the test set is all it reads (and the training set would not fit beside the checkpoint)
    python3 -c "import numpy as np, sys; z = np.load(sys.argv[1]); np.savez_compressed(sys.argv[2],
      **{k: z[k] for k in z.files if not k.startswith('train_')})" \
      "$shared/CIFAR10-jpeg/cifar10_jpeg_q75.npz" .gpu/data/CIFAR10-jpeg/cifar10_jpeg_q75.npz
    echo "carrying $run to continue it (only it runs in that window)"
  else cp -r "$shared/CIFAR10-jpeg" .gpu/data/; fi
  du -sh .gpu; exit
fi
if [ "$exp" = unpack ]; then  # the files a `paper` window returned -> docs/results/gpu/paper/RUN/
  for f in "${2:?FILES_AT}"/*.tgz "${2}"/*/*.tgz; do [ -f "$f" ] || continue
    n=$(basename "$f" .tgz); d=docs/results/gpu/paper/$n; mkdir -p "$d" && tar -xzf "$f" -C "$d" && echo "$d: $(ls "$d" | tr '\n' ' ')"
    rm -rf "runs/gpu_handover/$n"  # continued (or finished) in this window: a newer handover, if any, follows
  done
  for p in "$2"/*.ckpt.part00 "$2"/*/*.ckpt.part00; do [ -f "$p" ] || continue  # RUN.genG.ckpt.part00 -> handover
    b=$(basename "$p" .ckpt.part00); n=${b%.gen*}; g=${b##*.gen}; h=runs/gpu_handover/$n
    rm -rf "$h" && mkdir -p "$h/gen$g" && (cd "docs/results/gpu/paper/$n" && cp -r --parents chain_config.json \
      handover.sha256 gen*/eval.json "$OLDPWD/$h/") && cat "${p%00}"?? > "$h/gen$g/model.ckpt" \
      && (cd "$h" && sha256sum -c --quiet handover.sha256) && echo "$h: M$g to continue from (bash bench/gpu.sh prepare cifar $n)"
  done; exit
fi
budget=${2:?seconds}; shift 2
export PYTHONUNBUFFERED=1 WANDB_MODE=disabled DFM_DATA_DIR=/tmp/dfm_data
python3 -m pip install -q --no-index --no-deps --target /tmp/site .gpu/whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
mkdir -p "$DFM_DATA_DIR" && cp -r .gpu/data/CIFAR10-jpeg .gpu/data/coco-substitute "$DFM_DATA_DIR/"
for f in .gpu/data/*/raw/*.gz; do [ -f "$f" ] || continue; rel=${f#.gpu/data/}; mkdir -p "$DFM_DATA_DIR/$(dirname "$rel")"
  gunzip -c "$f" > "$DFM_DATA_DIR/${rel%.gz}"; done
runs=${RUNS:-/tmp/dfm_runs}; out=${OUT:-gpu_out}/$exp; mkdir -p "$runs" "$out"
nvidia-smi -L; python3 -c "import torch, pytorch_lightning as pl; print('torch', torch.__version__, 'lightning', pl.__version__)"
quiet=(--wandb.enabled false --trainer.enable_progress_bar false --trainer.enable_model_summary false)
# one chain in the background, stopped at the budget; its log and results are copied to $out as they appear
chain() { local name=$1; shift
  # EXTRA: options appended to every chain (a smoke test of this script on a CPU shrinks the runs with it)
  timeout -k 10 "$((budget - SECONDS))" python3 -m dfm_lightning.cli chain "$@" --run_dir "$runs/$name" "${quiet[@]}" \
    ${EXTRA:-} > "$out/$name.log" 2>&1 & }
skip() { local r; for r in "${SKIP[@]}"; do [ "$r" = "$1" ] && return 0; done; return 1; }
collect() { for d in "$runs"/*/; do n=$(basename "$d"); mkdir -p "$out/$n"
  cp "$d"results.json "$d"results.md "$d"accuracy.png "$out/$n/" 2>/dev/null
  for g in "$d"gen*/extracted.png; do [ -f "$g" ] && cp "$g" "$out/$n/D$(basename "$(dirname "$g")" | tr -dc 0-9).png"; done; done; }
MNIST=(--config configs/fit/mnist_lenet.yaml --config configs/chain/mnist.yaml)
CIFAR=(--config configs/fit/cifar10_vgg8.yaml --config configs/chain/cifar10.yaml --data.num_workers 0
       --extraction.num_workers 0 --distill_data.num_workers 0  # loader workers crashed on a small /dev/shm
       --data.download false)  # offline; and a continued chain's window carries the test set alone
# one run dir -> $out/RUN.tgz: what the docs need (no data, no checkpoints); rewritten atomically
pack() { local d=$1 n; n=$(basename "$1"); [ -d "$d" ] || return 0
  (cd "$d" && tar -czf "$out/.$n.tgz" --ignore-failed-read chain_config.json results.json results.md accuracy.png handover.sha256 \
     gen*/eval.json gen*/extracted.png crosseval ../"$n".log 2>/dev/null) && mv "$out/.$n.tgz" "$out/$n.tgz"; }
# an unfinished chain's newest finished model -> $out/RUN.genG.ckpt.part00, part01 (written once per generation)
handover() { local d=$1 n g gens; n=$(basename "$1")
  gens=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["generations"])' "$d/chain_config.json" 2>/dev/null)
  [ -f "$d/gen${gens:-x}/eval.json" ] && { rm -f "$out/$n".gen*.ckpt.part*; return 0; }  # complete: nothing to continue
  for g in 9 8 7 6 5 4 3 2 1 0 ""; do [ -f "$d/gen$g/eval.json" ] && [ -f "$d/gen$g/model.ckpt" ] && break; done
  [ -n "$g" ] && [ ! -f "$out/$n.gen$g.ckpt.part00" ] || return 0
  (cd "$d" && sha256sum "gen$g/model.ckpt" > handover.sha256) && split -b 15M -d "$d/gen$g/model.ckpt" "$out/.$n.part" &&
    rm -f "$out/$n".gen*.ckpt.part* && for p in "$out/.$n.part"*; do mv "$p" "$out/$n.gen$g.ckpt.${p##*.}"; done; }
pack_table3() { (cd "$runs" && tar -czf "$out/.table3.tgz" --ignore-failed-read table3_*/results.json table3_*/results.md \
  table3_*/chain_config.json table3_*/gen*/eval.json table3_*.log 2>/dev/null) && mv "$out/.table3.tgz" "$out/table3.tgz"; }
table4() { for run in "$@"; do  # every finished generation of the run: each D(g) on each M(g')
  local data=() ckpts=(); for g in 1 2 3 4 5 6 7 8 9; do [ -f "$runs/$run/gen$g/data/manifest.json" ] && data+=("\"$runs/$run/gen$g/data\""); done
  for g in 0 1 2 3 4 5 6 7 8 9; do [ -f "$runs/$run/gen$g/eval.json" ] && [ -f "$runs/$run/gen$g/model.ckpt" ] &&
    ckpts+=("\"$runs/$run/gen$g/model.ckpt\""); done  # (a continued chain's earlier models stayed behind)
  [ ${#data[@]} -gt 0 ] || continue
  python3 -m dfm_lightning.cli crosseval --out_dir "$runs/$run/crosseval" --num_samples "${CROSSEVAL_SAMPLES:-10000}" \
    --datasets "[$(IFS=,; echo "${data[*]}")]" --checkpoints "[$(IFS=,; echo "${ckpts[*]}")]" >> "$runs/$run.log" 2>&1; done; }
case $exp in
  throughput) timeout "$budget" python3 bench/throughput.py --archs lenet,vgg8,vgg16,resnet18,resnet50 \
                --num_samples 100000 --shard_size 25000 --steps 20 --fast off,nocompile,on --train_batch 512 --train_steps 40 \
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
  recipes) timeout "$budget" python3 bench/cifar_recipes.py ${1:+--only "$1"} --dtm --work_dir "$runs/recipes" \
             --out "$out/recipes.jsonl" ;;
  paper)
    SKIP=("$@"); runs=$runs/paper; mkdir -p "$runs"
    handed=$(ls .gpu/handover 2>/dev/null)  # a chain cut short in an earlier window: it alone runs (no training set)
    for n in $handed; do cp -r ".gpu/handover/$n" "$runs/"; done
    for n in cifar10 cifar10_robust; do [ -z "$handed" ] || echo "$handed" | grep -qx "$n" || SKIP+=("$n"); done
    skip cifar10 || chain cifar10 "${CIFAR[@]}"
    skip cifar10_robust || chain cifar10_robust "${CIFAR[@]}" --config configs/robust/cifar10.yaml
    while [ -n "$(jobs -r)" ]; do sleep 10; for n in cifar10 cifar10_robust; do
      cp "$out/$n.log" "$runs/" 2>/dev/null; handover "$runs/$n"; pack "$runs/$n"; done; done
    for n in cifar10 cifar10_robust; do cp "$out/$n.log" "$runs/" 2>/dev/null; handover "$runs/$n"; done
    table4 cifar10 cifar10_robust
    for n in cifar10 cifar10_robust; do pack "$runs/$n"; done
    [ -z "$handed" ] && for src in vgg16 vgg19 resnet18; do for dst in $src $(echo vgg16 vgg19 resnet18 resnet50 | tr ' ' '\n' | grep -vx "$src"); do
      n=table3_${src}_to_$dst; skip "$n" && continue; [ $SECONDS -lt $((budget - 30)) ] || break 2
      m0=(); [ "$dst" = "$src" ] || m0=(--m0_ckpt_path "$runs/table3_${src}_to_$src/gen0/model.ckpt" --distill.arch "$dst")
      [ "$dst" = "$src" ] || [ -f "$runs/table3_${src}_to_$src/gen0/model.ckpt" ] || continue
      chain "$n" "${CIFAR[@]}" --generations 1 --model.arch "$src" "${m0[@]}"; wait
      cp "$out/$n.log" "$runs/" 2>/dev/null; pack_table3; done; done
    rm -f "$out"/*.log  # inside the .tgz files (at most 8 files come back)
    for f in "$out"/*.tgz; do echo "== $f"; tar -xzOf "$f" --wildcards '*results.md' 2>/dev/null | head -40
      tar -tzf "$f" | grep -q crosseval.md && tar -xzOf "$f" crosseval/crosseval.md; done | tee "$out/summary.txt"
    exit ;;
  *) echo "unknown experiment $exp" >&2; exit 2 ;;
esac
while [ -n "$(jobs -r)" ]; do sleep 10; collect; done
collect
for f in "$out"/*.log; do [ -f "$f" ] && { echo "== $f"; grep -E "\[chain\]|Error|error" "$f" | tail -12; }; done | tee "$out/summary.txt"
