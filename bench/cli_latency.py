"""How fast does `dfm` answer? Wall time of `dfm --help`, each subcommand's --help and an argument error (the
median of --repeats fresh processes each), plus the import time of pytorch_lightning alone for reference.

    python bench/cli_latency.py [--repeats 5]
"""
import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "dfm --help": ["--help"],
    "dfm fit --help": ["fit", "--help"],
    "dfm chain --help": ["chain", "--help"],
    "dfm extract --help": ["extract", "--help"],
    "dfm chain --trainer.acelerator cpu (error)": ["chain", "--run_dir", "r", "--trainer.acelerator", "cpu"],
}


def wall(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    dfm = [sys.executable, "-m", "dfm_lightning.cli"]
    rows = {name: [wall(dfm + args) for _ in range(a.repeats)] for name, args in CASES.items()}
    rows["python -c 'import pytorch_lightning'"] = [wall([sys.executable, "-c", "import pytorch_lightning"])
                                                    for _ in range(a.repeats)]
    print(f"| command | median wall s (of {a.repeats}) | min | max |\n|---|---:|---:|---:|")
    for name, t in rows.items():
        print(f"| `{name}` | {statistics.median(t):.2f} | {min(t):.2f} | {max(t):.2f} |")


if __name__ == "__main__":
    main()
