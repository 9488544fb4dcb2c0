"""``virtual_logits``, the paper's method (Benz et al., "Data from Model: Extracting Data from Non-robust and Robust
Models", CVPR-W 2020): L2-PGD minimising ||Z(x) - Z_v||_2 towards a random *virtual logit* Z_v per sample. Stores
(x', Z(x')); meant for logit L2 DtM. The default."""
from dataclasses import dataclass

import numpy as np
import torch

from dfm_lightning.data.draws import VIRTUAL_LOGITS, hashed_uniforms
from dfm_lightning.extraction.methods import DfMMethod, register_method


@dataclass
class VirtualLogits:
    """Per sample: one random class gets N(top_mean, top_std); the other K-1 get means equally spaced in
    [rest_low, rest_high] (in random order) with spread rest_std. Sample i is a pure function of (seed, i)."""

    top_mean: float = 20.0
    top_std: float = 2.0
    rest_low: float = -3.0
    rest_high: float = 3.0
    rest_std: float = 1.0

    def sample(self, indices: list[int] | range, seed: int, num_classes: int) -> torch.Tensor:
        """Virtual logits (len(indices), num_classes) as float32, a whole shard at once (a generator per sample took
        26 us each, 13 s per 500k generation in the main process: a minute of a GPU chain)."""
        k = num_classes
        u = hashed_uniforms(seed, list(indices), 3 * k, VIRTUAL_LOGITS)
        order = np.argsort(u[:, :k], axis=1)  # a uniformly random order of the classes per sample
        normal = np.sqrt(-2 * np.log1p(-u[:, k:2 * k])) * np.cos(2 * np.pi * u[:, 2 * k:])  # Box-Muller
        rows = np.arange(len(u))[:, None]
        mean, std = np.empty_like(normal), np.empty_like(normal)
        mean[rows, order[:, :1]], std[rows, order[:, :1]] = self.top_mean, self.top_std
        mean[rows, order[:, 1:]] = np.linspace(self.rest_high, self.rest_low, k - 1)
        std[rows, order[:, 1:]] = self.rest_std
        return torch.from_numpy(mean + std * normal).float()


def logit_distance(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample ||Z(x) - Z_v||_2 (the quantity DfM minimises)."""
    return (logits.float() - target).norm(dim=1)


@register_method
class VirtualLogitsMethod(DfMMethod):
    name = "virtual_logits"

    def __init__(self, virtual: VirtualLogits | None = None):
        self.virtual = virtual or VirtualLogits()

    def targets(self, indices, seed: int, num_classes: int) -> torch.Tensor:
        return self.virtual.sample(indices, seed, num_classes)

    def objective(self, model, x_s, targets):
        return model, targets, logit_distance

    def metrics(self, logits, targets):
        return {"logit_distance": float(logit_distance(logits, targets).mean()),
                "hits_virtual_class": float((logits.argmax(1) == targets.argmax(1)).float().mean())}
