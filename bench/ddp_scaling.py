"""DfM extraction throughput with 1, 2, ... DDP processes, through the real CLI (`dfm extract`, Lightning's launcher).

The figure is the steady state: image-steps/s from the times each rank wrote its shards (rank r writes shards r,
r + W, ...), summed over ranks, so process start-up and imports are left out; the command's wall time is reported
too. On the CPU the cores are split evenly between the processes (OMP_NUM_THREADS), so the ratio says what the DDP
machinery costs or gains on a fixed machine; on GPUs each process has its own device.

    python bench/ddp_scaling.py [--accelerator cpu] [--devices 1,2] [--arch lenet_wide | --ckpt_path M0.ckpt]
                                [--num_samples 12000] [--shard_size 500] [--steps 20] [--out FILE]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DFM = [sys.executable, "-m", "dfm_lightning.cli"]


def train_m0(arch: str, workdir: Path, accelerator: str) -> Path:
    """A LeNet-family M0 on the embedded digits data (seconds, no download)."""
    subprocess.run([*DFM, "fit", "--config", "configs/fit/digits_lenet.yaml", "--model.arch", arch,
                    "--trainer.max_epochs", "1", "--trainer.accelerator", accelerator, "--trainer.devices", "1",
                    "--trainer.logger", "false", "--trainer.enable_progress_bar", "false",
                    "--trainer.default_root_dir", str(workdir / "m0")], check=True, capture_output=True,
                   cwd=Path(__file__).resolve().parents[1])
    return next((workdir / "m0").rglob("*.ckpt"))


def steady_rate(out_dir: Path, world: int, shard_size: int, steps: int) -> float:
    """Image-steps/s: per rank, shards after its first over the time between its first and last; summed."""
    times = {int(p.name[6:11]): p.stat().st_mtime for p in out_dir.glob("shard-?????.json")}
    rate = 0.0
    for rank in range(world):
        mine = sorted(t for k, t in times.items() if k % world == rank)
        rate += (len(mine) - 1) * shard_size * steps / (mine[-1] - mine[0])
    return rate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--devices", default="1,2")
    p.add_argument("--arch", default="lenet_wide", help="M0 trained for a second on digits (LeNet family)")
    p.add_argument("--ckpt_path", default=None, help="extract from this checkpoint instead (e.g. a CIFAR-10 VGG8 M0)")
    p.add_argument("--num_samples", type=int, default=12000)
    p.add_argument("--shard_size", type=int, default=500)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--out", default=None)
    args = p.parse_args()
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.ckpt_path or train_m0(args.arch, Path(tmp), args.accelerator)
        for n in [int(d) for d in args.devices.split(",")]:
            out = Path(tmp) / f"d{n}"
            env = {**os.environ, "WANDB_MODE": "disabled"}
            if args.accelerator == "cpu":
                env["OMP_NUM_THREADS"] = str(max(1, cores // n))
            trainer = f"{{accelerator: {args.accelerator}, devices: {n}, enable_progress_bar: false" + \
                      (", strategy: ddp}" if n > 1 else "}")
            t0 = time.time()
            subprocess.run([*DFM, "extract", "--ckpt_path", str(ckpt), "--out_dir", str(out),
                            "--extraction.substitute", "noise", "--extraction.num_samples", str(args.num_samples),
                            "--extraction.shard_size", str(args.shard_size), "--extraction.steps", str(args.steps),
                            "--trainer", trainer], check=True, capture_output=True, env=env)
            wall = time.time() - t0
            rows.append({"accelerator": args.accelerator, "processes": n, "threads_per_process": env.get("OMP_NUM_THREADS"),
                         "arch": args.arch if args.ckpt_path is None else args.ckpt_path, "num_samples": args.num_samples, "shard_size": args.shard_size,
                         "steps": args.steps, "wall_s": round(wall, 1),
                         "image_steps_per_s": round(steady_rate(out, n, args.shard_size, args.steps))})
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["image_steps_per_s"]
    for r in rows:
        print(f"{r['processes']} process(es): {r['image_steps_per_s']} image-steps/s, {r['image_steps_per_s'] / base:.2f}x "
              f"of {rows[0]['processes']}; wall {r['wall_s']} s")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
