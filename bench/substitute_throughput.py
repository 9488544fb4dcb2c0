"""Substitute images per second on one CPU thread: Fashion-MNIST pool images (indices below the pool size) and
random crops (indices above it), through ``SubstituteDataset.images`` as extraction calls it.

    DFM_DATA_DIR=../shared/datasets python bench/substitute_throughput.py
"""
import time

import torch

from dfm_lightning.data.substitute import SubstituteDataset

torch.set_num_threads(1)
s = SubstituteDataset("fashion_mnist", 70000, 1, 28, seed=3)
for name, idx in [("pool", range(1000, 6000)), ("crops", range(65000, 70000))]:
    t = time.time()
    x = s.images(idx)
    print(name, round(len(idx) / (time.time() - t)), "img/s, checksum", float(x.sum()))
