#!/usr/bin/env bash
# The paper's Table 3 (cross-architecture DtM on CIFAR-10): extract D1 from M0 of architecture A and train a
# fresh model of architecture B on it, for A in vgg16 vgg19 resnet18 and B in vgg16 vgg19 resnet18 resnet50.
# Each A's M0 is trained once (in the first chain) and reused through m0.ckpt_path.
# Usage: bash bench/table3.sh OUT_DIR        (BUDGET=1 for the CPU budget configs)
set -euo pipefail
out=${1:-runs/table3}
config=configs/cifar10_vgg8_chain.yaml
[ "${BUDGET:-0}" = 1 ] && config=configs/cifar10_vgg8_chain_budget.yaml
for src in vgg16 vgg19 resnet18; do
  first="$out/${src}_to_${src}"
  dfm chain --config "$config" --run_dir "$first" --generations 1 --m0.arch "$src" --distill.arch "$src"
  for dst in vgg16 vgg19 resnet18 resnet50; do
    [ "$dst" = "$src" ] && continue
    dfm chain --config "$config" --run_dir "$out/${src}_to_${dst}" --generations 1 --m0.arch "$src" \
      --m0.ckpt_path "$first/gen0/model.ckpt" --distill.arch "$dst"
  done
done
python - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = {}
for d in sorted(out.glob("*_to_*")):
    src, dst = d.name.split("_to_")
    rows.setdefault(src, {})[dst] = json.loads((d / "results.json").read_text())["generations"][1]["test_accuracy"]
dsts = ["vgg16", "vgg19", "resnet18", "resnet50"]
lines = ["| D1 from \\ M1 arch | " + " | ".join(dsts) + " |", "|---|" + "---:|" * len(dsts)]
lines += [f"| {s} | " + " | ".join(f"{100 * r[d]:.1f}" if d in r else "" for d in dsts) + " |" for s, r in rows.items()]
(out / "table3.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PY
