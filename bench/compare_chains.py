"""One plot of several chains' clean test accuracy per generation, beside the paper's.

    python bench/compare_chains.py OUT.png "label=DIR_OR_results.json" ... [--paper 99.5,98.5,96.6,91.5,87.4,76.5]
"""
import argparse
import json
from pathlib import Path

from dfm_lightning.evaluation.figures import save_comparison_plot


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("out")
    p.add_argument("chains", nargs="+", help="label=path to a run dir or its results.json")
    p.add_argument("--paper", default="", help="comma-separated accuracies (%%) of the paper's M0, M1, ...")
    p.add_argument("--title", default="")
    a = p.parse_args()
    curves = {}
    for item in a.chains:
        label, path = item.split("=", 1)
        path = Path(path) / "results.json" if Path(path).is_dir() else Path(path)
        curves[label] = [100 * g["test_accuracy"] for g in json.loads(path.read_text())["generations"]]
    paper = [float(v) for v in a.paper.split(",")] if a.paper else None
    print(save_comparison_plot(curves, a.out, a.title, paper=paper))


if __name__ == "__main__":
    main()
