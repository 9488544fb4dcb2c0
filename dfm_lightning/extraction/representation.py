"""``representation``: L2-PGD that makes x' look, to the model's penultimate layer, like another substitute.

After the D_R / D_NR constructions of Ilyas et al., "Adversarial Examples Are Not Bugs, They Are Features"
(NeurIPS 2019), which match the representation of a target image starting from noise or another image; adapted to
the data-free setting: for sample i of a shard the target is r_j = g(x_s[j]), the penultimate-layer representation
(the input of the model's last linear layer) of another substitute j of the same shard, drawn by a seeded
permutation without fixed points, and PGD minimises ||g(x) - r_j||_2 from x = x_s[i]. So x' keeps x_s[i]'s pixels
near by but carries x_s[j]'s features. Stores (x', Z(x')); meant for logit L2 DtM.
"""
import numpy as np
import torch
from torch import nn

from dfm_lightning.errors import UserError
from dfm_lightning.extraction.methods import DfMMethod, register_method


class Penultimate(nn.Module):
    """The model up to its last linear layer: returns that layer's input."""

    def __init__(self, model: nn.Module):
        super().__init__()
        linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise UserError("the representation method needs a model whose last layer is nn.Linear")
        self.model, self.last = model, linears[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seen = []
        handle = self.last.register_forward_hook(lambda module, inputs, out: seen.append(inputs[0]))
        try:
            self.model(x)
        finally:
            handle.remove()  # the model is shared: leave no hook behind
        return seen[0].flatten(1)


@register_method
class Representation(DfMMethod):
    name = "representation"

    def check(self, model):
        Penultimate(model)

    def targets(self, indices, seed: int, num_classes: int) -> torch.Tensor:
        """Per sample, which other sample of its shard gives the target (an offset in [1, n-1] of a rotation)."""
        n = len(indices)
        shift = int(np.random.default_rng([seed, int(indices[0]) if n else 0, 3]).integers(1, max(n, 2)))
        return torch.tensor([(k + shift) % n for k in range(n)])

    def objective(self, model, x_s, targets):
        features = Penultimate(model)
        with torch.no_grad():
            reps = features(x_s)[targets.long()]
        return features, reps, lambda r, t: (r.float() - t).norm(dim=1)
