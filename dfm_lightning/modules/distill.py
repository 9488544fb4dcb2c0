"""DtM from extracted data: a fresh model trained to reproduce the stored logits (L2 logit distillation)."""
import torch
from torch.nn import functional as F
from torchmetrics import MeanMetric

from dfm_lightning.errors import UserError
from dfm_lightning.modules.classifier import ImageModel


def logit_l2(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of the squared L2 distance between logit vectors: mean_i ||z_i - t_i||_2^2."""
    return (logits - target).square().sum(dim=1).mean()


DTM_LOSSES = {"logit_l2": logit_l2,
              # hard labels: the argmax of the stored logits (for data whose labels are all it should teach)
              "cross_entropy": lambda logits, target: F.cross_entropy(logits, target.argmax(1))}


class Distiller(ImageModel):
    """A fresh registry model trained to reproduce stored logits; ``loss`` is :func:`logit_l2` (the paper's) or
    ``cross_entropy`` on the stored logits' argmax.

    Validation uses a held-out part of the extracted data (``val/distill_loss``, ``val/agreement`` = argmax
    match with the stored logits); ``test/acc`` is accuracy on the origin test set, never used for selection.
    """

    def __init__(self, arch: str = "lenet", in_channels: int = 1, num_classes: int = 10, input_size: int = 28,
                 optimizer: str = "adam", lr: float = 2e-3, weight_decay: float = 0.0, momentum: float = 0.9,
                 scheduler: str = "none", arch_kwargs: dict | None = None, loss: str | None = None):
        super().__init__(arch, in_channels, num_classes, input_size, optimizer, lr, weight_decay, momentum, scheduler,
                         arch_kwargs)
        if loss is not None and loss not in DTM_LOSSES:  # None: logit_l2 (and run dirs made before this option match)
            raise UserError(f"distill loss must be one of {', '.join(DTM_LOSSES)}, got {loss!r}")
        self.loss_fn = DTM_LOSSES[loss or "logit_l2"]
        self.save_hyperparameters()
        self.val_loss = MeanMetric()  # a metric, not a float: under DDP the mean over all ranks' samples, exactly

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, z = batch
        loss = self.loss_fn(self.model(x), z)
        # every 100th batch: a diverged model stays non-finite, and a check per step would sync the GPU each step
        if batch_idx % 100 == 0 and not torch.isfinite(loss):
            raise UserError(f"DtM diverged: distillation loss is {loss.item()} at step {self.global_step}; "
                            f"lower the learning rate (now {self.opt['lr']}) or use optimizer adam")
        self.log("train/distill_loss", loss, prog_bar=True)
        return loss

    def validation_step(self, batch, batch_idx: int) -> None:
        x, z = batch
        logits = self.model(x)
        self.val_loss.update((logits - z).square().sum(dim=1))
        self.log("val/distill_loss", self.val_loss, prog_bar=True)
        self.val_acc(logits, z.argmax(1))
        self.log("val/agreement", self.val_acc, prog_bar=True)
