"""The paper's robustness protocol (Table 2): untargeted L2-PGD, 20 steps of 2.5 * eps / steps, per eps.

Runs as ``Trainer.test`` with ``inference_mode=False`` so it gets Lightning's progress bar, devices and
DDP metric sync; eps = 0 is clean accuracy. Under DDP every test image is evaluated exactly once (no padding), so
the figures do not depend on the number of processes.
"""
from dataclasses import dataclass, field

import pytorch_lightning as pl
import torch
from torch import nn
from torchmetrics import SumMetric
from torchmetrics.classification import MulticlassAccuracy

from dfm_lightning.attacks import cross_entropy_per_sample, l2_pgd
from dfm_lightning.callbacks import with_fast_path
from dfm_lightning.data.origin import EvalDataModule
from dfm_lightning.errors import UserError
from dfm_lightning.models import freeze, num_classes_of


@dataclass
class Robustness:
    """The protocol: untargeted L2-PGD with ``steps`` steps of ``rel_step_size * eps / steps`` for each ``eps``
    (0 = clean accuracy), on the first ``num_test_images`` images of the test set (None: all of them)."""

    eps: list[float] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    steps: int = 20
    rel_step_size: float = 2.5
    num_test_images: int | None = None

    def __post_init__(self) -> None:  # refused when the config is built: these would report a meaningless number
        if any(e < 0 for e in self.eps):
            raise UserError(f"robustness eps must be >= 0, got {list(self.eps)}")
        if any(e > 0 for e in self.eps) and (self.steps <= 0 or self.rel_step_size <= 0):
            raise UserError(f"robustness with eps > 0 needs steps > 0 and rel_step_size > 0 (got steps={self.steps}, "
                            f"rel_step_size={self.rel_step_size}): it would report clean accuracy as robust accuracy")
        if self.num_test_images is not None and self.num_test_images < 1:
            raise UserError(f"robustness num_test_images must be >= 1 or null (all), got {self.num_test_images}")


def eps_key(eps: float) -> str:
    """How an eps is written in keys and metric names: 1.0 -> '1', 0.5 -> '0.5'."""
    return f"{eps:g}"


class RobustnessEval(pl.LightningModule):
    """Wraps a frozen model; ``test_step`` logs ``robust/acc_eps{e}`` for every eps and ``robust/num_images``."""

    def __init__(self, model: nn.Module, eps: list[float], steps: int, rel_step_size: float):
        super().__init__()
        Robustness(list(eps), steps, rel_step_size)  # the same checks as a config
        self.model = freeze(model)
        self.eps, self.steps, self.rel_step_size = list(eps), steps, rel_step_size
        num_classes = num_classes_of(model)
        self.accs = nn.ModuleList([MulticlassAccuracy(num_classes, average="micro") for _ in self.eps])
        self.num_images = SumMetric()  # summed over ranks: proves each image counted once

    def test_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        for eps, acc in zip(self.eps, self.accs):
            adv = l2_pgd(self.model, x, y, cross_entropy_per_sample, eps=eps, steps=self.steps,
                         step_size=self.rel_step_size * eps / max(self.steps, 1))
            with torch.no_grad():
                acc.update(self.model(adv), y)
            self.log(f"robust/acc_eps{eps_key(eps)}", acc, prog_bar=len(self.eps) <= 3)
        self.num_images.update(torch.tensor(float(len(x)), device=x.device))
        self.log("robust/num_images", self.num_images)


def evaluate_robustness(model: nn.Module, datamodule: pl.LightningDataModule, protocol: Robustness = Robustness(),
                        trainer: pl.Trainer | None = None) -> tuple[dict[str, float], int]:
    """Accuracy under L2-PGD for each eps on the datamodule's first ``protocol.num_test_images`` test images, as
    ({eps_key: fraction}, number of images evaluated). A given ``trainer`` keeps its own devices and callbacks."""
    p = protocol
    evaluator = RobustnessEval(model, p.eps, p.steps, p.rel_step_size)
    trainer = trainer or pl.Trainer(logger=False, enable_checkpointing=False, enable_model_summary=False,
                                    callbacks=with_fast_path(None))
    trainer.test_loop.inference_mode = False  # PGD needs gradients w.r.t. the inputs
    trainer.test(evaluator, datamodule=EvalDataModule(datamodule, p.num_test_images), verbose=False)
    metrics = trainer.callback_metrics
    return {eps_key(e): float(metrics[f"robust/acc_eps{eps_key(e)}"]) for e in p.eps}, int(metrics["robust/num_images"])


def format_table(rows: dict[str, dict[str, float]]) -> str:
    """Markdown table of accuracies (%) with one row per model and one column per eps."""
    eps = list(next(iter(rows.values())))
    lines = ["| model | " + " | ".join(f"eps={e}" for e in eps) + " |", "|---|" + "---:|" * len(eps)]
    lines += [f"| {name} | " + " | ".join(f"{100 * r[e]:.1f}" for e in eps) + " |" for name, r in rows.items()]
    return "\n".join(lines)
