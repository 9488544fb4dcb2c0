"""DtM recipe comparison on one extracted dataset: a plain PyTorch loop (no Lightning), L2 logit loss, Adam,
constant vs cosine learning rate, scored on the held-out slice of the MNIST *training* set that
`bench/sweep_extraction.py`'s M0 never saw (OriginDataModule val_size=5000, split_seed=0).

    python bench/dtm_recipe.py runs/sweep/steps40_lr0.1 [--epochs 20] [--lr 0.002]
"""
import argparse
import json
import math
import time

import torch

from dfm_lightning.data import ExtractedDataset, OriginDataModule
from dfm_lightning.models import create_model


def train(x: torch.Tensor, z: torch.Tensor, schedule: str, lr: float, epochs: int, batch: int = 128) -> torch.nn.Module:
    torch.manual_seed(0)
    net = create_model("lenet")
    opt = torch.optim.Adam(net.parameters(), lr)
    total, step = epochs * math.ceil(len(x) / batch), 0
    for _ in range(epochs):
        perm = torch.randperm(len(x))
        for i in range(0, len(x), batch):
            scale = 0.5 * (1 + math.cos(math.pi * step / total)) if schedule == "cosine" else 1.0
            for group in opt.param_groups:
                group["lr"] = lr * scale
            b = perm[i:i + batch]
            loss = (net(x[b]) - z[b]).square().sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    return net


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("dataset")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--lr", type=float, default=0.002)
    args = p.parse_args()
    ds = ExtractedDataset(args.dataset)
    x, z = ds.__getitems__(list(range(len(ds))))
    holdout = OriginDataModule("mnist", download=False, val_size=5000)
    holdout.setup("fit")
    xv, yv = holdout.val_set.__getitems__(list(range(5000)))
    for schedule in ("constant", "cosine"):
        t0 = time.time()
        net = train(x, z, schedule, args.lr, args.epochs)
        with torch.no_grad():
            acc = (net(xv).argmax(1) == yv).float().mean().item()
        print(json.dumps({"dataset": args.dataset, "schedule": schedule, "epochs": args.epochs, "lr": args.lr,
                          "heldout_acc": round(acc, 4), "seconds": round(time.time() - t0)}), flush=True)


if __name__ == "__main__":
    main()
