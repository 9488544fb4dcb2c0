"""The DfM-method comparison of bench/compare_methods.sh as one markdown table: per M0 and method, M1's test
accuracy for each seed and their mean, M1's robust accuracy (mean over seeds) and what extraction did.

    python bench/methods_table.py runs/methods [--seeds 0 1]
"""
import argparse
import json
from pathlib import Path

METHODS = ["virtual_logits", "model_labels", "random_target_ce", "representation", "bn_statistics"]
KINDS = ["nonrobust", "robust", "bn"]  # bench/compare_methods.sh's M0s


def row(runs: Path, kind: str, method: str, seeds: list[int]) -> str | None:
    results, metrics = [], []
    for s in seeds:
        run = runs / f"{kind}-{method}-s{s}"
        generations = json.loads((run / "results.json").read_text())["generations"] if (run / "results.json").exists() else []
        if len(generations) < 2:  # M1 not evaluated yet
            return None
        results.append(generations[1])
        metrics.append(json.loads((run / "gen1" / "data" / "manifest.json").read_text())["metrics"])

    def mean(values) -> float:
        values = list(values)
        return sum(values) / len(values)

    accs = [100 * r["test_accuracy"] for r in results]
    robust = [f"{mean(100 * r['robust_accuracy'][e] for r in results):.1f}" for e in ("1", "2", "3")]
    hit = [m.get("hits_virtual_class", m.get("hits_target_class")) for m in metrics]
    hit = "-" if hit[0] is None else f"{100 * mean(hit):.1f}%"
    return (f"| {kind} | `{method}` | {' / '.join(f'{a:.2f}' for a in accs)} | **{mean(accs):.2f}** | "
            f"{' | '.join(robust)} | {mean(m['delta_l2'] for m in metrics):.2f} | {hit} | "
            f"{mean(r['extract_seconds'] for r in results):.0f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", type=Path)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    args = p.parse_args()
    seeds = " / ".join(f"s{s}" for s in args.seeds)
    print(f"| M0 | method | M1 test acc (%) {seeds} | mean | eps=1 | eps=2 | eps=3 | \\|\\|x' - x_s\\|\\| | "
          "x' in its target class | extraction s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for kind in KINDS:
        for method in METHODS:
            if not any((args.runs / f"{kind}-{method}-s{s}").exists() for s in args.seeds):
                continue  # not part of that M0's comparison
            line = row(args.runs, kind, method, args.seeds)
            print(line if line else f"| {kind} | `{method}` | (not complete) |")


if __name__ == "__main__":
    main()
