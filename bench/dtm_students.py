"""Which DtM student learns an extracted dataset best? A Distiller (the chain's DtM module) per student
architecture, recipe and seed, scored on the first ``--holdout`` MNIST *training* images (the student never sees
origin data, and the test set stays untouched).

    python bench/dtm_students.py RUN/gen1/data [MORE_DATA ...] --arch lenet [--arch_kwargs '{"batch_norm": true}'] \
        [--seed 1] [--epochs 15] [--lr 0.002] [--scheduler none|cosine] [--num_samples N] [--final_only]

Several dataset directories are concatenated; ``--num_samples N`` keeps the first N samples (the number-of-images
ablation); ``--final_only`` drops stored trajectory snapshots (`dfm extract --extraction.snapshot_steps`), i.e. the
paper's storage from the same extraction. Prints one JSON line with the held-out accuracy after every epoch.
"""
import argparse
import json
import time

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from dfm_lightning.data import ExtractedDataset, load_origin
from dfm_lightning.data.origin import ImageDataset, keep_batch
from dfm_lightning.modules import Distiller


class HeldOutAccuracy(pl.Callback):
    """Accuracy on the held-out origin images after every training epoch."""

    def __init__(self, loader: DataLoader):
        self.loader, self.per_epoch = loader, []

    @torch.no_grad()
    def on_train_epoch_end(self, trainer, module) -> None:
        module.eval()
        hits = sum((module(x).argmax(1) == y).sum().item() for x, y in self.loader)
        self.per_epoch.append(round(100 * hits / len(self.loader.dataset), 2))
        module.train()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("data", nargs="+")
    p.add_argument("--arch", default="lenet")
    p.add_argument("--arch_kwargs", type=json.loads, default=None, help="JSON, passed to the registry builder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--scheduler", choices=("none", "cosine"), default="none")
    p.add_argument("--batch_size", type=int, default=128)
    p.add_argument("--num_samples", type=int, default=None, help="train on the first N samples only")
    p.add_argument("--final_only", action="store_true", help="final DfM iterates only (no trajectory snapshots)")
    p.add_argument("--holdout", type=int, default=10000, help="score on the first N MNIST training images")
    a = p.parse_args()
    torch.set_num_threads(1)
    parts = [ExtractedDataset(d) for d in a.data]
    picked = [ds.final_indices() if a.final_only else range(len(ds)) for ds in parts]
    x, z = (torch.cat(t)[:a.num_samples] for t in zip(*(ds.__getitems__(list(i)) for ds, i in zip(parts, picked))))
    xh, yh = load_origin("mnist", train=True)
    holdout = DataLoader(ImageDataset(xh[:a.holdout], yh[:a.holdout]), batch_size=1000, collate_fn=keep_batch)
    pl.seed_everything(a.seed, verbose=False)
    student = Distiller(a.arch, in_channels=x.shape[1], input_size=x.shape[-1], num_classes=z.shape[1], lr=a.lr,
                        scheduler=a.scheduler, arch_kwargs=a.arch_kwargs)
    train = DataLoader(ImageDataset(x, z), batch_size=a.batch_size, shuffle=True, collate_fn=keep_batch)
    score = HeldOutAccuracy(holdout)
    t0 = time.time()
    pl.Trainer(max_epochs=a.epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
               enable_progress_bar=False, enable_model_summary=False, callbacks=[score]).fit(student, train)
    print(json.dumps({**vars(a), "num_train": len(x), "acc": score.per_epoch[-1], "per_epoch": score.per_epoch,
                      "seconds": round(time.time() - t0)}), flush=True)


if __name__ == "__main__":
    main()
