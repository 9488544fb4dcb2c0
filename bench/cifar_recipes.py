"""Choose the CIFAR-10 VGG8 M0 recipes on a held-out slice of the *training* set (never the test set).

Each candidate trains M0 on 45k training images and reports accuracy on the other 5k (``data.val_size``), for robust
candidates also L2-PGD accuracy there (the Table 2 protocol: 20 steps of 2.5 * eps / 20), and the seconds it took.
Candidates differ in batch size, learning rate and epochs (large batches keep a GPU busy; the paper's recipe is not
given). One JSON line per candidate, as it finishes, so a run cut short keeps every finished candidate:

    python bench/cifar_recipes.py [--only NAME,...] [--out FILE] [--val_pgd_images 1000] [--smoke]

``--smoke`` (a check of this script on a CPU): one batch per epoch, one epoch, one validation batch.
"""
import argparse
import json
import time

import pytorch_lightning as pl

from dfm_lightning.callbacks import with_fast_path
from dfm_lightning.data.origin import OriginDataModule
from dfm_lightning.evaluation.robustness import Robustness, evaluate_robustness
from dfm_lightning.modules import Classifier

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


def run(name: str, val_pgd_images: int, smoke: bool = False) -> dict:
    kwargs, batch_size, epochs = CANDIDATES[name]
    limits = {"max_epochs": 1, "limit_train_batches": 1, "limit_val_batches": 1} if smoke else {"max_epochs": epochs}
    pl.seed_everything(0, verbose=False)
    dm = OriginDataModule("cifar10", batch_size=batch_size, val_size=5000, augment=True)
    module = Classifier(**kwargs)
    trainer = pl.Trainer(**limits, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=with_fast_path(None))
    start = time.time()
    trainer.fit(module, datamodule=dm)
    seconds = time.time() - start
    val_acc = float(trainer.validate(module, datamodule=dm, verbose=False)[0]["val/acc"])
    row = {"candidate": name, "batch_size": batch_size, "epochs": epochs, **kwargs, "val_acc": round(val_acc, 4),
           "train_seconds": round(seconds, 1)}
    if kwargs.get("adv_eps"):  # robustness on the held-out slice, not the test set
        protocol = Robustness(eps=[0, 0.25, 0.5, 1], steps=20, num_test_images=val_pgd_images)
        accs, n = evaluate_robustness(module.model, _HeldOut(dm), protocol)
        row.update(val_robust={k: round(v, 4) for k, v in accs.items()}, val_robust_images=n)
    return row


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
    args = p.parse_args()
    for name in args.only.split(","):
        row = run(name, args.val_pgd_images, args.smoke)
        print(json.dumps(row), flush=True)
        if args.out:
            with open(args.out, "a") as f:
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
