"""Choose the CIFAR-10 VGG8 M0 and DtM recipes on held-out data (never the test set).

M0: each candidate trains M0 on 45k training images and reports accuracy on the other 5k (``data.val_size``), for robust
candidates also L2-PGD accuracy there (the Table 2 protocol: 20 steps of 2.5 * eps / 20), and the seconds it took.
Candidates differ in batch size, learning rate and epochs (large batches keep a GPU busy; the paper's recipe is not
given). DtM (``--dtm``): D1 of ``--dtm_samples`` COCO substitutes from the best non-robust M0 candidate (by its
held-out accuracy), then student candidates (optimiser, rate, batch, augmentation of the extracted images) scored
on a held-out 5k slice of D1: agreement with the stored labels and the logit L2 loss. One JSON line per candidate,
as it finishes, so a run cut short keeps every finished candidate:

    python bench/cifar_recipes.py [--only NAME,...] [--out FILE] [--val_pgd_images 1000] [--smoke]
                                  [--dtm] [--dtm_samples 100000] [--work_dir DIR]

``--smoke`` (a check of this script on a CPU): one batch per epoch, one epoch, one validation batch.
"""
import argparse
import json
import time
from pathlib import Path

import pytorch_lightning as pl

from dfm_lightning.callbacks import with_fast_path
from dfm_lightning.data.extracted import ExtractedDataModule
from dfm_lightning.data.origin import OriginDataModule
from dfm_lightning.evaluation.robustness import Robustness, evaluate_robustness
from dfm_lightning.extraction import ExtractionConfig, extract
from dfm_lightning.modules import Classifier, Distiller, load_module, save_module

SGD = {"arch": "vgg8", "in_channels": 3, "input_size": 32, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 5e-4}
CANDIDATES = {  # name: (Classifier arguments, batch size, epochs)
    "bs128_lr0.05_e60": ({**SGD, "lr": 0.05}, 128, 60),  # the recipe of configs/fit/cifar10_vgg8.yaml
    "bs512_lr0.2_e40": ({**SGD, "lr": 0.2}, 512, 40),
    "bs512_lr0.1_e40": ({**SGD, "lr": 0.1}, 512, 40),
    "bs1024_lr0.4_e60": ({**SGD, "lr": 0.4}, 1024, 60),
    "robust_bs512_lr0.1_e40": ({**SGD, "lr": 0.1, "adv_eps": 0.5, "adv_steps": 7}, 512, 40),
    "robust_bs512_lr0.2_e30": ({**SGD, "lr": 0.2, "adv_eps": 0.5, "adv_steps": 7}, 512, 30),
    "robust_bs256_lr0.05_e40": ({**SGD, "lr": 0.05, "adv_eps": 0.5, "adv_steps": 7}, 256, 40),
}

DTM = {  # name: (Distiller arguments, batch size, epochs, augment the extracted images)
    "adam1e-3_bs256_e30": ({"optimizer": "adam", "lr": 1e-3}, 256, 30, False),  # configs/chain/cifar10.yaml
    "adam2e-3_bs1024_e20": ({"optimizer": "adam", "lr": 2e-3}, 1024, 20, False),
    "adam2e-3_bs1024_e20_aug": ({"optimizer": "adam", "lr": 2e-3}, 1024, 20, True),
    "adam1e-3_bs512_e20_cosine": ({"optimizer": "adam", "lr": 1e-3, "scheduler": "cosine"}, 512, 20, False),
}


def _trainer(smoke: bool, epochs: int) -> pl.Trainer:
    limits = {"max_epochs": 1, "limit_train_batches": 1, "limit_val_batches": 1} if smoke else {"max_epochs": epochs}
    return pl.Trainer(**limits, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=with_fast_path(None))


def run(name: str, val_pgd_images: int, smoke: bool = False, save_dir: Path | None = None) -> dict:
    kwargs, batch_size, epochs = CANDIDATES[name]
    pl.seed_everything(0, verbose=False)
    dm = OriginDataModule("cifar10", batch_size=batch_size, val_size=5000, augment=True)
    module = Classifier(**kwargs)
    trainer = _trainer(smoke, epochs)
    start = time.time()
    trainer.fit(module, datamodule=dm)
    seconds = time.time() - start
    val_acc = float(trainer.validate(module, datamodule=dm, verbose=False)[0]["val/acc"])
    row = {"candidate": name, "batch_size": batch_size, "epochs": epochs, **kwargs, "val_acc": round(val_acc, 4),
           "train_seconds": round(seconds, 1)}
    if save_dir is not None:
        save_module(module, save_dir / f"{name}.ckpt")
    if kwargs.get("adv_eps"):  # robustness on the held-out slice, not the test set
        protocol = Robustness(eps=[0, 0.25, 0.5, 1], steps=20, num_test_images=val_pgd_images)
        accs, n = evaluate_robustness(module.model, _HeldOut(dm), protocol)
        row.update(val_robust={k: round(v, 4) for k, v in accs.items()}, val_robust_images=n)
    return row


def run_dtm(name: str, data: Path, smoke: bool = False) -> dict:
    kwargs, batch_size, epochs, augment = DTM[name]
    pl.seed_everything(1, verbose=False)
    dm = ExtractedDataModule(str(data), origin="cifar10", batch_size=batch_size, val_size=5000, augment=augment)
    student = Distiller(arch="vgg8", in_channels=3, input_size=32, **kwargs)
    trainer = _trainer(smoke, epochs)
    start = time.time()
    trainer.fit(student, datamodule=dm)
    seconds = time.time() - start
    val = trainer.validate(student, datamodule=dm, verbose=False)[0]
    return {"dtm_candidate": name, "batch_size": batch_size, "epochs": epochs, "augment": augment, **kwargs,
            "val_agreement": round(float(val["val/agreement"]), 4),
            "val_distill_loss": round(float(val["val/distill_loss"]), 4), "train_seconds": round(seconds, 1)}


class _HeldOut(OriginDataModule):
    """The held-out training slice in the place of the test set (what evaluate_robustness reads)."""

    def __init__(self, dm: OriginDataModule):
        super().__init__("cifar10", batch_size=500, val_size=dm.val_size, split_seed=dm.split_seed)

    def setup(self, stage: str | None = None) -> None:
        super().setup("fit")
        self.test_set = self.val_set


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--only", default=",".join(CANDIDATES))
    p.add_argument("--val_pgd_images", type=int, default=1000)
    p.add_argument("--out", default=None)
    p.add_argument("--smoke", action="store_true")
    p.add_argument("--dtm", action="store_true")
    p.add_argument("--dtm_samples", type=int, default=100000)
    p.add_argument("--work_dir", default="recipes_work")
    args = p.parse_args()
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)

    def report(row: dict) -> None:
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")

    rows = []
    for name in args.only.split(","):
        rows.append(run(name, args.val_pgd_images, args.smoke, save_dir=work))
        report(rows[-1])
    if args.dtm:
        best = max((r for r in rows if not r.get("adv_eps")), key=lambda r: r["val_acc"])["candidate"]
        config = ExtractionConfig(substitute="coco", num_samples=args.dtm_samples, steps=2 if args.smoke else 40,
                                  shard_size=min(25000, args.dtm_samples))
        extract(load_module(work / f"{best}.ckpt").model, work / f"D1_{best}", config, seed=1, input_shape=(3, 32),
                trainer_kwargs={"enable_progress_bar": False})
        for name in DTM:
            report({"m0": best, "dtm_samples": args.dtm_samples, **run_dtm(name, work / f"D1_{best}", args.smoke)})


if __name__ == "__main__":
    main()
