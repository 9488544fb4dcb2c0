"""Which student learns an extracted dataset best? A plain PyTorch DtM loop (L2 logit loss, Adam, batch 128) per
student architecture and seed, scored each epoch on the first 10k MNIST *training* images (M1 never sees origin data,
and the test set stays untouched). Students: any registry name, or the LeNet-5 variants below.

    python bench/dtm_students.py RUN/gen1/data [MORE_DATA ...] --arch lenet --seed 1 [--epochs 15] [--lr 0.002] [--sched const|tail] [--ema 0.999] [--num_samples N]

Several dataset directories are concatenated (e.g. the trajectory points of `bench/trajectory_ablation.py`);
``--num_samples N`` keeps the first N samples (the number-of-images ablation); ``--final_only`` drops stored
trajectory snapshots (the paper's storage, from the same extraction).
"""
import argparse
import copy
import json
import math
import time

import torch
from torch import nn

from dfm_lightning.data import ExtractedDataset
from dfm_lightning.data.origin import load_origin
from dfm_lightning.models import Normalize, create_model


VARIANTS = ("lenet_leaky", "lenet_bn", "lenet_widefc")


def lenet5_variant(kind: str) -> nn.Module:
    """LeNet-5 with LeakyReLU (``lenet_leaky``), batch norm (``lenet_bn``) or fc 512-256 (``lenet_widefc``)."""
    if kind == "lenet_leaky":
        return nn.Sequential(*[nn.LeakyReLU(0.1) if isinstance(m, nn.ReLU) else m for m in create_model("lenet")])
    bn2, bn1 = (nn.BatchNorm2d, nn.BatchNorm1d) if kind == "lenet_bn" else (nn.Identity, nn.Identity)
    f1, f2 = (512, 256) if kind == "lenet_widefc" else (120, 84)
    return nn.Sequential(Normalize(), nn.Conv2d(1, 6, 5, padding=2), bn2(6), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), bn2(16), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, f1), bn1(f1), nn.ReLU(), nn.Linear(f1, f2), bn1(f2), nn.ReLU(), nn.Linear(f2, 10))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("data", nargs="+")
    p.add_argument("--arch", default="lenet")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--sched", choices=("const", "tail"), default="const", help="tail: lr x0.1 for the last 20%% of steps")
    p.add_argument("--ema", type=float, default=0.0, help="score an exponential moving average of the weights")
    p.add_argument("--num_samples", type=int, default=None, help="train on the first N samples only")
    p.add_argument("--final_only", action="store_true", help="final DfM iterates only (no trajectory snapshots)")
    a = p.parse_args()
    torch.set_num_threads(1)
    xt, yt = load_origin("mnist", train=True)
    xt, yt = xt[:10000].float() / 255, yt[:10000]
    parts = [ExtractedDataset(d) for d in a.data]
    picked = [ds.final_indices() if a.final_only else range(len(ds)) for ds in parts]
    x, z = (torch.cat(t)[:a.num_samples] for t in zip(*(ds.__getitems__(list(i)) for ds, i in zip(parts, picked))))
    torch.manual_seed(a.seed)
    net = lenet5_variant(a.arch) if a.arch in VARIANTS else create_model(a.arch)
    opt = torch.optim.Adam(net.parameters(), a.lr)
    ema = copy.deepcopy(net)

    def score(m: nn.Module) -> float:
        with torch.no_grad():
            return round(100 * (m.eval()(xt).argmax(1) == yt).float().mean().item(), 2)

    total, step, per_epoch, t0 = a.epochs * math.ceil(len(x) / 128), 0, [], time.time()
    for _ in range(a.epochs):
        net.train()
        perm = torch.randperm(len(x))
        for i in range(0, len(x), 128):
            for g in opt.param_groups:
                g["lr"] = a.lr * (0.1 if a.sched == "tail" and step >= 0.8 * total else 1.0)
            b = perm[i:i + 128]
            loss = (net(x[b]) - z[b]).square().sum(1).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
            if a.ema:
                with torch.no_grad():
                    for pe, pn in zip(ema.parameters(), net.parameters()):
                        pe.lerp_(pn, 1 - a.ema)
        per_epoch.append(score(ema if a.ema else net))
    print(json.dumps({**vars(a), "acc": per_epoch[-1], "last_batch_loss": round(loss.item(), 2),
                      "per_epoch": per_epoch, "seconds": round(time.time() - t0)}), flush=True)


if __name__ == "__main__":
    main()
