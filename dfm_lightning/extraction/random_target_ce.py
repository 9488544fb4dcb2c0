"""``random_target_ce``: targeted L2-PGD towards a uniformly random class by cross-entropy.

The D_rand construction of Ilyas et al., "Adversarial Examples Are Not Bugs, They Are Features" (NeurIPS 2019),
there from the training set, here from substitutes: x' is pushed into a random class t by minimising
CE(Z(x), t). Stores (x', Z(x')) - the model's own logits, not t - and is meant for logit L2 DtM.
"""
import torch
from torch.nn import functional as F

from dfm_lightning.data.draws import RANDOM_CLASS, uniform_classes
from dfm_lightning.extraction.methods import DfMMethod, register_method


@register_method
class RandomTargetCE(DfMMethod):
    name = "random_target_ce"
    stream = RANDOM_CLASS

    def targets(self, indices, seed: int, num_classes: int) -> torch.Tensor:
        return torch.from_numpy(uniform_classes(seed, list(indices), num_classes, self.stream))

    def objective(self, model, x_s, targets):
        return model, targets.long(), lambda logits, t: F.cross_entropy(logits.float(), t, reduction="none")

    def metrics(self, logits, targets):
        return {"hits_target_class": float((logits.argmax(1) == targets).float().mean())}
