"""Substitute images per second on one CPU thread, through ``SubstituteDataset.images`` as extraction calls it:
Fashion-MNIST pool images (indices below the pool size) and random crops (indices above it) for MNIST, and random
crops of the 64-pixel MS-COCO set for CIFAR-10 (if it is under $DFM_DATA_DIR).

    DFM_DATA_DIR=../shared/datasets python bench/substitute_throughput.py
"""
import time

import torch

from dfm_lightning.data.substitute import SubstituteDataset, check_source

torch.set_num_threads(1)
cases = [(SubstituteDataset("fashion_mnist", 70000, 1, 28, seed=3), "pool", range(1000, 6000)),
         (None, "crops", range(65000, 70000))]
try:
    check_source("coco")
    cases.append((SubstituteDataset("coco", 70000, 3, 32, seed=3), "coco crops", range(65000, 70000)))
except Exception:  # noqa: BLE001 - the COCO set is optional
    pass
for s, name, idx in cases:
    s = s or cases[0][0]
    t = time.time()
    x = s.images(idx)
    print(name, round(len(idx) / (time.time() - t)), "img/s, checksum", float(x.sum()))
