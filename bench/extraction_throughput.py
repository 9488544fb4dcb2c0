"""DfM extraction throughput (image-steps per second) per architecture and precision, through the real
`extract()` path (Trainer.predict + shard writer). Random-init models; noise substitutes.

    python bench/extraction_throughput.py [--num_samples 20000] [--shard_size 10000] [--steps 20] [--out FILE]
"""
import argparse
import json
import shutil
import tempfile
import time

import torch

from dfm_lightning.extraction import ExtractionConfig, extract
from dfm_lightning.models import create_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--num_samples", type=int, default=20000)
    p.add_argument("--shard_size", type=int, default=10000)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--archs", default="lenet,vgg8")
    p.add_argument("--precisions", default="32-true,bf16-mixed")
    p.add_argument("--out", default=None)
    args = p.parse_args()
    rows = []
    for arch in args.archs.split(","):
        channels, size = (1, 28) if arch == "lenet" else (3, 32)
        for precision in args.precisions.split(","):
            torch.manual_seed(0)
            model = create_model(arch, in_channels=channels, input_size=size)
            cfg = ExtractionConfig(substitute="noise", num_samples=args.num_samples, steps=args.steps,
                                   step_size=0.1, shard_size=args.shard_size, num_workers=4)
            tmp = tempfile.mkdtemp()
            try:
                warm = ExtractionConfig(**{**cfg.__dict__, "num_samples": min(args.shard_size, 1000), "shard_size": 1000})
                extract(model, f"{tmp}/warm", warm, input_shape=(channels, size),
                        trainer_kwargs={"precision": precision, "enable_progress_bar": False})
                t0 = time.time()
                extract(model, f"{tmp}/d", cfg, input_shape=(channels, size),
                        trainer_kwargs={"precision": precision, "enable_progress_bar": False})
                seconds = time.time() - t0
            finally:
                shutil.rmtree(tmp)
            rows.append({"arch": arch, "precision": precision, "num_samples": args.num_samples, "steps": args.steps,
                         "seconds": round(seconds, 2), "image_steps_per_s": round(args.num_samples * args.steps / seconds),
                         "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"})
            print(json.dumps(rows[-1]), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
