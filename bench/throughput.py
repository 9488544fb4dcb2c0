"""DfM and training throughput per architecture: the framework (`extract()`: Trainer.predict, shard source, writer) against a bare
PyTorch loop of the same L2-PGD on the same model and shard sizes, and the FLOP rate both reach.

FLOPs per image-step are counted with `torch.utils.flop_counter` on one PGD step (forward and the input gradient);
rates are steady state (the first shard, which pays for warm-up and compiling, is left out of both). ``--precisions``
repeats each architecture per Lightning precision (the bare loop runs under the matching autocast), e.g. fp32 vs
bf16-mixed; ``--fast`` per fast-path setting (``off``: eager; ``on``: :class:`~dfm_lightning.callbacks.FastPath`,
bf16 autocast + channels_last + torch.compile, for both the framework and the bare loop; ``nocompile``: the same
without compile). Training (M0's cross-entropy step; DtM's is the same network) is measured the same two ways:
``Trainer.fit`` of a Classifier over a device-resident training set against a bare SGD loop, in images/s.

``--repeats N`` measures each pair N times, the framework and the bare loop taking turns, and reports the median of
the N overheads with their range: on a shared or noisy machine one pair can be off by +-20% (seen on a 2-core CPU),
while drift within a run hits both members of a pair alike.

    python bench/throughput.py [--archs lenet_wide,vgg8,resnet18] [--num_samples 2048] [--shard_size 256]
                               [--steps 10] [--precisions 32-true] [--fast off,on] [--device cpu|cuda] [--out FILE]
                               [--train_batch 128] [--train_steps 20] [--repeats 1]
"""
import contextlib
import argparse
import json
import statistics
import tempfile
import time

import pytorch_lightning as pl
import torch
from torch.nn import functional as F
from torch.utils.flop_counter import FlopCounterMode

from dfm_lightning.attacks import l2_pgd
from dfm_lightning.callbacks import FastPath
from dfm_lightning.data.origin import DeviceLoader, ImageDataset
from dfm_lightning.extraction import ExtractionConfig, VirtualLogits, extract
from dfm_lightning.extraction.virtual_logits import logit_distance
from dfm_lightning.models import create_model, freeze
from dfm_lightning.models.fast import accelerate, restore
from dfm_lightning.modules import Classifier

SHAPES = {"lenet": (1, 28), "lenet_wide": (1, 28), "mlp": (1, 28)}  # others: CIFAR-10 images
FAST = {"off": FastPath(enabled=False), "on": FastPath(enabled=True), "nocompile": FastPath(enabled=True, compile=False)}


def flops_per_image_step(model, shape, device) -> float:
    x = torch.rand(8, *shape, device=device)
    z = VirtualLogits().sample(range(8), 0, 10).to(device)
    with FlopCounterMode(display=False) as counter:
        l2_pgd(model, x, z, logit_distance, steps=1, step_size=0.1, maximize=False)
    return counter.get_total_flops() / 8


def autocast(precision: str, device: str):
    """What Lightning's ``precision`` does around a step, for the bare loop."""
    if precision.startswith("bf16"):
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    if precision.startswith("16"):
        return torch.autocast(device_type=device, dtype=torch.float16)
    return contextlib.nullcontext()


def bare(model, shape, args, device, precision, fast: FastPath) -> float:
    """Image-steps/s of the same PGD in a plain loop over shards (the first shard left out)."""
    if fast.enabled:
        accelerate(model, torch.device(device), fast.bf16, fast.channels_last, fast.compile)
    virtual, times = VirtualLogits(), []
    for k in range(args.num_samples // args.shard_size):
        x = torch.rand(args.shard_size, *shape, device=device)
        z = virtual.sample(range(k * args.shard_size, (k + 1) * args.shard_size), 0, 10).to(device)
        t0 = time.perf_counter()
        with autocast(precision, device):
            adv = l2_pgd(model, x, z, logit_distance, steps=args.steps, step_size=0.1, maximize=False)
            with torch.no_grad():
                model(adv).float().cpu()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    restore(model)
    return args.shard_size * args.steps * (len(times) - 1) / sum(times[1:])


def framework(model, shape, args, device, precision, fast: FastPath) -> float:
    """Image-steps/s of `extract()` from the shards' own timings (the first shard left out)."""
    cfg = ExtractionConfig(substitute="noise", num_samples=args.num_samples, shard_size=args.shard_size,
                           steps=args.steps, step_size=0.1)
    with tempfile.TemporaryDirectory() as tmp:
        ds = extract(model, tmp, cfg, input_shape=shape, trainer_kwargs={
            "accelerator": "gpu" if device == "cuda" else "cpu", "devices": 1, "enable_progress_bar": False,
            "precision": precision, "callbacks": [fast]})
        seconds = [s["metrics"]["seconds"] for s in sorted(ds.manifest["shards"], key=lambda s: s["shard"])]
    return args.shard_size * args.steps * (len(seconds) - 1) / sum(seconds[1:])


WARM = 3  # training steps left out (the first ones pay for compiling and cuDNN's autotuning)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


class _StepTimes(pl.Callback):
    def __init__(self, device: str):
        self.device, self.times = device, []

    def on_train_batch_end(self, trainer, *args) -> None:
        _sync(self.device)
        self.times.append(time.perf_counter())


def train_framework(arch, shape, args, device, precision, fast: FastPath) -> float:
    """Images/s of ``Trainer.fit`` (Classifier, device-resident random images), steady state."""
    channels, size = shape
    n = args.train_batch * args.train_steps
    data = ImageDataset(torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8), torch.randint(0, 10, (n,)))
    times = _StepTimes(device)
    trainer = pl.Trainer(accelerator="gpu" if device == "cuda" else "cpu", devices=1, max_epochs=1, precision=precision,
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, callbacks=[fast, times])
    module = Classifier(arch=arch, in_channels=channels, input_size=size, optimizer="sgd", lr=0.01)
    trainer.fit(module, train_dataloaders=DeviceLoader(data, args.train_batch, device))
    return args.train_batch * (len(times.times) - WARM) / (times.times[-1] - times.times[WARM - 1])


def train_bare(arch, shape, args, device, precision, fast: FastPath) -> float:
    """Images/s of a plain SGD loop of the same step on the same kind of network."""
    channels, size = shape
    model = create_model(arch, in_channels=channels, num_classes=10, input_size=size).to(device)
    if fast.enabled:
        accelerate(model, torch.device(device), fast.bf16, fast.channels_last, fast.compile)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(args.train_batch, channels, size, size, device=device)
    y = torch.randint(0, 10, (args.train_batch,), device=device)
    for step in range(args.train_steps):
        if step == WARM:
            _sync(device)
            t0 = time.perf_counter()
        with autocast(precision, device):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    _sync(device)
    return args.train_batch * (args.train_steps - WARM) / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default="lenet_wide,vgg8,resnet18")
    p.add_argument("--num_samples", type=int, default=2048)
    p.add_argument("--shard_size", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--precisions", default="32-true")
    p.add_argument("--fast", default="off", help="comma-separated: off, on, nocompile")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--train_batch", type=int, default=128)
    p.add_argument("--train_steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=1, help="framework/bare pairs per setting, taking turns")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    rows = []
    for arch in args.archs.split(","):
        channels, size = SHAPES.get(arch, (3, 32))
        torch.manual_seed(0)
        model = freeze(create_model(arch, in_channels=channels, num_classes=10, input_size=size)).to(args.device)
        flops = flops_per_image_step(model, (channels, size, size), args.device)
        for precision, fast in [(p, f) for p in args.precisions.split(",") for f in args.fast.split(",")]:
            runs = {"fw": [], "base": [], "train_fw": [], "train_base": []}
            for _ in range(args.repeats):  # taking turns, so drift within the run hits both sides of a pair
                runs["fw"].append(framework(model, (channels, size), args, args.device, precision, FAST[fast]))
                runs["base"].append(bare(model, (channels, size, size), args, args.device, precision, FAST[fast]))
                runs["train_fw"].append(train_framework(arch, (channels, size), args, args.device, precision, FAST[fast]))
                runs["train_base"].append(train_bare(arch, (channels, size), args, args.device, precision, FAST[fast]))
            overhead = sorted(b / f - 1 for f, b in zip(runs["fw"], runs["base"]))
            train_overhead = sorted(b / f - 1 for f, b in zip(runs["train_fw"], runs["train_base"]))
            fw, base, train_fw, train_base = (statistics.median(runs[k]) for k in ("fw", "base", "train_fw", "train_base"))
            rows.append({"arch": arch, "precision": precision, "fast_path": fast, "steps": args.steps,
                         "shard_size": args.shard_size, "repeats": args.repeats,
                         "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                         "threads": torch.get_num_threads(), "image_steps_per_s_framework": round(fw, 1),
                         "image_steps_per_s_bare": round(base, 1),
                         "framework_overhead": round(statistics.median(overhead), 3),
                         "framework_overhead_range": [round(overhead[0], 3), round(overhead[-1], 3)],
                         "gflop_per_image_step": round(flops / 1e9, 4), "tflops_framework": round(fw * flops / 1e12, 4),
                         "train_batch": args.train_batch, "train_images_per_s_framework": round(train_fw, 1),
                         "train_images_per_s_bare": round(train_base, 1),
                         "train_overhead": round(statistics.median(train_overhead), 3),
                         "train_overhead_range": [round(train_overhead[0], 3), round(train_overhead[-1], 3)]})
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
