"""``bn_statistics``: L2-PGD that makes a shard's batch-norm statistics match the model's own, towards random classes.

After DeepInversion (Yin et al., "Dreaming to Distill: Data-free Knowledge Transfer via DeepInversion", CVPR 2020),
which synthesises images from noise by matching, at every batch-norm layer l, the per-channel mean and variance of
the layer's input over the batch to the running estimates the layer kept in training. Here from substitutes and
inside the PGD budget: with t_i a uniformly random class, PGD minimises per sample

    CE(Z(x_i), t_i) + w * R,    R = sum_l ||mu_l(x) - running_mean_l||_2 + ||var_l(x) - running_var_l||_2,

where mu_l, var_l (biased) are taken over the whole shard. R is one number for the shard; since PGD sums the
per-sample losses, each sample's gradient carries n * dR/dx_i, of the order of its own cross-entropy's whatever
the shard size. w = 10 is DeepInversion's CIFAR-10 setting; its image priors (total variation, L2) are left out,
PGD's box and L2 ball around the substitute take their place. Stores (x', Z(x')); meant for logit L2 DtM. Only for
models with batch norm (VGG, ResNet), and its statistics are those of one shard (of one rank under DDP).
"""
import torch
from torch import nn
from torch.nn import functional as F

from dfm_lightning.data.draws import BN_CLASS
from dfm_lightning.errors import UserError
from dfm_lightning.extraction.methods import register_method
from dfm_lightning.extraction.random_target_ce import RandomTargetCE


class WithBNDistance(nn.Module):
    """The model's logits plus one last column: R for the whole batch (the same in every row)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not self.norms:
            raise UserError("the bn_statistics method needs a model with batch norm layers (this one has none); "
                            "choose another --extraction.method")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        distances = []

        def hook(module, inputs, out):
            h = inputs[0].float()
            dims = [0, *range(2, h.dim())]  # all but the channels
            distances.append((h.mean(dims) - module.running_mean).norm()
                             + (h.var(dims, unbiased=False) - module.running_var).norm())

        handles = [m.register_forward_hook(hook) for m in self.norms]
        try:
            logits = self.model(x).float()
        finally:
            for h in handles:
                h.remove()  # the model is shared: leave no hook behind
        return torch.cat([logits, torch.stack(distances).sum().expand(len(x), 1)], 1)


@register_method
class BNStatistics(RandomTargetCE):
    """random_target_ce's targets and measures (from a draw stream of its own), plus the statistics term."""

    name = "bn_statistics"
    stream = BN_CLASS
    weight = 10.0

    def check(self, model):
        WithBNDistance(model)

    def objective(self, model, x_s, targets):
        def loss(out: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return F.cross_entropy(out[:, :-1], t, reduction="none") + self.weight * out[:, -1]

        return WithBNDistance(model), targets.long(), loss
