"""What M0 and DtM share (:class:`ImageModel`), and M0 itself: a registry model trained with cross-entropy,
optionally with L2-PGD adversarial training (Madry et al.)."""
import math

import pytorch_lightning as pl
import torch
from torch.nn import functional as F
from torchmetrics.classification import MulticlassAccuracy

from dfm_lightning.attacks import cross_entropy_per_sample, l2_pgd
from dfm_lightning.errors import UserError
from dfm_lightning.models import create_model

CHECKPOINT_KEY = "dfm_module"  # {"class": ..., "arch": ...}: what a checkpoint holds, read by load_module


class ImageModel(pl.LightningModule):
    """What M0 and DtM share: a fresh registry model, accuracy metrics, evaluation steps and the optimiser.

    ``arch_kwargs`` go to the architecture's builder (e.g. ``{convs: [16, 32]}`` for ``lenet``).
    ``scheduler``: ``cosine`` (per step, to zero) or ``none``. The optimiser is the module's own option,
    not LightningCLI's ``--optimizer``, so a checkpoint's hyper-parameters say what trained it. Subclasses save
    their own plain hyper-parameters, so checkpoints load with ``torch.load(..., weights_only=True)``, and every
    checkpoint records its module class and architecture.
    """

    def __init__(self, arch: str, in_channels: int, num_classes: int, input_size: int, optimizer: str, lr: float,
                 weight_decay: float, momentum: float, scheduler: str, arch_kwargs: dict | None):
        super().__init__()
        if optimizer not in ("adam", "sgd") or scheduler not in ("cosine", "none"):
            raise UserError(f"optimizer must be adam|sgd and scheduler cosine|none, got {optimizer!r}, {scheduler!r}")
        self.opt = dict(optimizer=optimizer, lr=lr, weight_decay=weight_decay, momentum=momentum, scheduler=scheduler)
        self.model = create_model(arch, in_channels=in_channels, num_classes=num_classes, input_size=input_size,
                                  **(arch_kwargs or {}))
        self.train_acc = MulticlassAccuracy(num_classes, average="micro")
        self.val_acc = MulticlassAccuracy(num_classes, average="micro")
        self.test_acc = MulticlassAccuracy(num_classes, average="micro")

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint[CHECKPOINT_KEY] = {"class": type(self).__name__, "arch": self.hparams.arch}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self.val_acc(self.model(x), y)
        self.log("val/acc", self.val_acc, prog_bar=True)

    def test_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        self.test_acc(self.model(x), y)
        self.log("test/acc", self.test_acc, prog_bar=True)

    def configure_optimizers(self):
        o = self.opt
        if o["optimizer"] == "adam":
            opt = torch.optim.Adam(self.parameters(), lr=o["lr"], weight_decay=o["weight_decay"])
        else:
            opt = torch.optim.SGD(self.parameters(), lr=o["lr"], momentum=o["momentum"],
                                  weight_decay=o["weight_decay"], nesterov=True)
        if o["scheduler"] == "none":
            return opt
        total = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


class Classifier(ImageModel):
    """M0: trains ``create_model(arch)`` with cross-entropy on labelled images; ``adv_eps`` > 0 trains on
    L2-PGD examples instead (Madry et al.; ``adv_step_size`` None = 2.5 * adv_eps / adv_steps)."""

    def __init__(self, arch: str = "lenet", in_channels: int = 1, num_classes: int = 10, input_size: int = 28,
                 optimizer: str = "adam", lr: float = 1e-3, weight_decay: float = 0.0, momentum: float = 0.9,
                 scheduler: str = "cosine", adv_eps: float = 0.0, adv_steps: int = 10, adv_step_size: float | None = None,
                 arch_kwargs: dict | None = None):
        super().__init__(arch, in_channels, num_classes, input_size, optimizer, lr, weight_decay, momentum, scheduler,
                         arch_kwargs)
        if adv_eps < 0 or adv_steps < 0 or (adv_step_size is not None and adv_step_size < 0):
            raise UserError(f"adv_eps, adv_steps and adv_step_size must be >= 0, got {adv_eps}, {adv_steps}, {adv_step_size}")
        if adv_eps > 0 and (adv_steps == 0 or adv_step_size == 0):
            raise UserError(f"adversarial training with adv_eps={adv_eps} needs adv_steps > 0 and adv_step_size > 0 "
                            "(or null); with none it would train on clean images")
        self.save_hyperparameters()

    def adversarial(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """L2-PGD examples against the current weights, generated in eval mode (batch-norm stats untouched)."""
        hp = self.hparams
        step = hp.adv_step_size if hp.adv_step_size is not None else 2.5 * hp.adv_eps / max(hp.adv_steps, 1)
        was_training = self.model.training
        self.model.eval()
        x = l2_pgd(self.model, x, y, cross_entropy_per_sample, eps=hp.adv_eps, steps=hp.adv_steps, step_size=step)
        self.model.train(was_training)
        return x

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        if self.hparams.adv_eps > 0:
            x = self.adversarial(x, y)
        logits = self.model(x)
        loss = F.cross_entropy(logits, y)
        self.train_acc(logits, y)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/acc", self.train_acc, prog_bar=True)
        return loss
