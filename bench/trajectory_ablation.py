"""Are the intermediate points of a DfM trajectory useful training data? One MNIST-shaped (1x28x28, 10 classes) extraction
(unbounded L2-PGD from substitute images towards virtual logits, as `dfm extract`) that also saves (x_t, Z(x_t)) after every
``--keep`` step count, each as its own extracted dataset ``OUT/step{t}``; ``step{steps}`` is what `dfm extract` stores.
Train students on any union of them with `bench/dtm_students.py OUT/step40 OUT/step20 ...`.

    python bench/trajectory_ablation.py --teacher RUN/gen1/model.ckpt --out runs/traj --num_samples 25000 --seed 2
"""
import argparse
import json
import time
from pathlib import Path

import torch

from dfm_lightning.attacks import l2_pgd
from dfm_lightning.data.extracted import write_manifest, write_shard
from dfm_lightning.data.substitute import SubstituteDataset
from dfm_lightning.extraction.extractor import logit_distance
from dfm_lightning.extraction.virtual_logits import VirtualLogits
from dfm_lightning.modules.classifier import freeze, load_classifier


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--teacher", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--num_samples", type=int, default=25000)
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--step_size", type=float, default=0.1)
    p.add_argument("--keep", default="0,10,20,30,40", help="step counts whose iterates are saved")
    p.add_argument("--substitute", default="fashion_mnist")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shard_size", type=int, default=1000)
    a = p.parse_args()
    torch.set_num_threads(1)
    keep = sorted({int(k) for k in a.keep.split(",")})
    assert keep[-1] <= a.steps, "--keep beyond --steps"
    model = freeze(load_classifier(a.teacher).model)
    sub = SubstituteDataset(a.substitute, a.num_samples, 1, 28, seed=a.seed)
    virtual = VirtualLogits()
    out = Path(a.out)
    t0 = time.time()
    num_shards = (a.num_samples + a.shard_size - 1) // a.shard_size
    for shard in range(num_shards):
        idx = range(shard * a.shard_size, min((shard + 1) * a.shard_size, a.num_samples))
        x, z_v, done = sub.images(idx), virtual.sample(idx, a.seed, 10), 0
        for k in keep:  # unbounded PGD restarted from x_t continues the same trajectory
            x = l2_pgd(model, x, z_v, logit_distance, steps=k - done, step_size=a.step_size, maximize=False)
            done = k
            with torch.no_grad():
                z = model(x).float()
            (out / f"step{k}").mkdir(parents=True, exist_ok=True)
            write_shard(out / f"step{k}", shard, x.numpy(), z.numpy())
        print(f"shard {shard + 1}/{num_shards} {time.time() - t0:.0f}s", flush=True)
    meta = {**vars(a), "extract_seconds": round(time.time() - t0, 1)}
    for k in keep:
        write_manifest(out / f"step{k}", num_shards, {**meta, "step": k})
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
