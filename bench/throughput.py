"""DfM throughput per architecture: the framework (`extract()`: Trainer.predict, shard source, writer) against a bare
PyTorch loop of the same L2-PGD on the same model and shard sizes, and the FLOP rate both reach.

FLOPs per image-step are counted with `torch.utils.flop_counter` on one PGD step (forward and the input gradient);
rates are steady state (the first shard, which pays for warm-up, is left out of both). ``--precisions`` repeats each
architecture per Lightning precision (the bare loop runs under the matching autocast), e.g. fp32 vs bf16-mixed.

    python bench/throughput.py [--archs lenet_wide,vgg8,resnet18] [--num_samples 2048] [--shard_size 256]
                               [--steps 10] [--precisions 32-true,bf16-mixed] [--device cpu|cuda] [--out FILE]
"""
import contextlib
import argparse
import json
import tempfile
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from dfm_lightning.attacks import l2_pgd
from dfm_lightning.extraction import ExtractionConfig, VirtualLogits, extract
from dfm_lightning.extraction.virtual_logits import logit_distance
from dfm_lightning.models import create_model, freeze

SHAPES = {"lenet": (1, 28), "lenet_wide": (1, 28), "mlp": (1, 28)}  # others: CIFAR-10 images


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


def bare(model, shape, args, device, precision) -> float:
    """Image-steps/s of the same PGD in a plain loop over shards (the first shard left out)."""
    virtual, times = VirtualLogits(), []
    for k in range(args.num_samples // args.shard_size):
        x = torch.rand(args.shard_size, *shape, device=device)
        z = virtual.sample(range(k * args.shard_size, (k + 1) * args.shard_size), 0, 10).to(device)
        t0 = time.perf_counter()
        with autocast(precision, device):
            adv = l2_pgd(model, x, z, logit_distance, steps=args.steps, step_size=0.1, maximize=False)
            with torch.no_grad():
                model(adv).float().cpu()
        times.append(time.perf_counter() - t0)
    return args.shard_size * args.steps * (len(times) - 1) / sum(times[1:])


def framework(model, shape, args, device, precision) -> float:
    """Image-steps/s of `extract()` from the shards' own timings (the first shard left out)."""
    cfg = ExtractionConfig(substitute="noise", num_samples=args.num_samples, shard_size=args.shard_size,
                           steps=args.steps, step_size=0.1)
    with tempfile.TemporaryDirectory() as tmp:
        ds = extract(model, tmp, cfg, input_shape=shape, trainer_kwargs={
            "accelerator": "gpu" if device == "cuda" else "cpu", "devices": 1, "enable_progress_bar": False,
            "precision": precision})
        seconds = [s["metrics"]["seconds"] for s in sorted(ds.manifest["shards"], key=lambda s: s["shard"])]
    return args.shard_size * args.steps * (len(seconds) - 1) / sum(seconds[1:])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--archs", default="lenet_wide,vgg8,resnet18")
    p.add_argument("--num_samples", type=int, default=2048)
    p.add_argument("--shard_size", type=int, default=256)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--precisions", default="32-true")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    rows = []
    for arch in args.archs.split(","):
        channels, size = SHAPES.get(arch, (3, 32))
        torch.manual_seed(0)
        model = freeze(create_model(arch, in_channels=channels, num_classes=10, input_size=size)).to(args.device)
        flops = flops_per_image_step(model, (channels, size, size), args.device)
        for precision in args.precisions.split(","):
            fw = framework(model, (channels, size), args, args.device, precision)
            base = bare(model, (channels, size, size), args, args.device, precision)
            rows.append({"arch": arch, "precision": precision, "steps": args.steps, "shard_size": args.shard_size,
                         "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                         "threads": torch.get_num_threads(), "image_steps_per_s_framework": round(fw, 1),
                         "image_steps_per_s_bare": round(base, 1), "framework_overhead": round(base / fw - 1, 3),
                         "gflop_per_image_step": round(flops / 1e9, 4), "tflops_framework": round(fw * flops / 1e12, 4)})
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
