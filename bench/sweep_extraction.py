"""Choose DfM defaults honestly: M0 -> D1 -> M1 for several (steps, step_size), scored on a held-out slice of
the MNIST *training* set (never the test set).

    python bench/sweep_extraction.py --m0 M0.ckpt --out runs/sweep [--num_samples 10000] [--epochs 10]

M0 must have been trained without the held-out slice: `dfm fit --config configs/fit/mnist_lenet.yaml --data.val_size 5000`.
"""
import argparse
import json
import time
from pathlib import Path

import pytorch_lightning as pl

from dfm_lightning.data import ExtractedDataModule, OriginDataModule
from dfm_lightning.extraction import ExtractionConfig, extract
from dfm_lightning.modules import Distiller, load_module

GRID = [(0, 0.1), (20, 0.1), (40, 0.1), (80, 0.1), (40, 0.05), (40, 0.2)]


def heldout_accuracy(module, holdout: OriginDataModule) -> float:
    trainer = pl.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False, accelerator="auto", devices=1)
    return float(trainer.test(module, dataloaders=holdout.val_dataloader(), verbose=False)[0]["test/acc"])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--m0", required=True)
    p.add_argument("--out", default="runs/sweep_extraction")
    p.add_argument("--num_samples", type=int, default=10000)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--val_size", type=int, default=5000)
    p.add_argument("--scheduler", default="none", choices=["none", "cosine"], help="DtM learning-rate schedule")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    holdout = OriginDataModule("mnist", download=False, val_size=args.val_size, batch_size=512)
    holdout.setup("fit")
    m0 = load_module(args.m0)
    rows = [{"model": "M0", "heldout_acc": heldout_accuracy(m0, holdout)}]
    for steps, step_size in GRID:
        name = f"steps{steps}_lr{step_size}"
        pl.seed_everything(0, verbose=False)
        t0 = time.time()
        cfg = ExtractionConfig(substitute="fashion_mnist", num_samples=args.num_samples, steps=steps,
                               step_size=step_size, shard_size=1000)
        extract(m0.model, out / name, cfg, seed=1, input_shape=(1, 28),
                trainer_kwargs={"enable_progress_bar": False, "accelerator": "auto", "devices": 1})
        t_extract = time.time() - t0
        m1 = Distiller("lenet", lr=0.002, scheduler=args.scheduler)
        dm = ExtractedDataModule(str(out / name), origin="mnist", val_size=1000, batch_size=128)
        pl.Trainer(max_epochs=args.epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, accelerator="auto", devices=1).fit(m1, datamodule=dm)
        rows.append({"model": f"M1 {name}", "steps": steps, "step_size": step_size,
                     "heldout_acc": heldout_accuracy(m1, holdout), "extract_seconds": round(t_extract, 1)})
        print(json.dumps(rows[-1]), flush=True)
        (out / "sweep.json").write_text(json.dumps(rows, indent=2))
    print("| model | held-out train acc (%) | extract s |\n|---|---:|---:|")
    for r in rows:
        print(f"| {r['model']} | {100 * r['heldout_acc']:.2f} | {r.get('extract_seconds', '')} |")


if __name__ == "__main__":
    main()
