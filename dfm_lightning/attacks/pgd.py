"""L2 projected gradient descent in pixel space with a pluggable per-sample loss.

Used three ways: maximise cross-entropy (adversarial training, robustness), and minimise the
distance to a virtual logit (DfM extraction). Gradients are taken w.r.t. the input only
(``torch.autograd.grad``), so the model's weight ``.grad`` is never touched.
"""
import math
from typing import Callable

import torch
from torch import nn
from torch.nn import functional as F

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy_per_sample(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The untargeted attack's loss (adversarial training, robustness): one cross-entropy per sample."""
    return F.cross_entropy(logits, y, reduction="none")


def _per_sample_norm(t: torch.Tensor) -> torch.Tensor:
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def l2_pgd(
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    loss_fn: LossFn,
    eps: float = math.inf,
    steps: int = 10,
    step_size: float = 0.1,
    maximize: bool = True,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """Return x + delta in [0, 1] with ||delta||_2 <= eps per sample, after ``steps`` normalised-gradient steps.

    ``loss_fn(logits, target)`` returns one loss per sample; it is maximised (untargeted attack) or
    minimised (``maximize=False``: targeted attack, extraction). ``eps=math.inf`` leaves delta unbounded.
    ``start`` (an earlier return value for the same ``x``) continues that run, so n + m steps can be taken in two calls.
    """
    if eps < 0 or steps < 0 or step_size < 0:
        raise ValueError(f"PGD needs eps, steps and step_size >= 0, got eps={eps}, steps={steps}, step_size={step_size}")
    if torch.is_inference_mode_enabled():
        raise RuntimeError("l2_pgd needs gradients: run it outside torch.inference_mode (Trainer(inference_mode=False))")
    x = x.detach().clone()
    delta = torch.zeros_like(x) if start is None else (start.detach() - x)
    if eps == 0 or steps == 0:
        return x + delta
    sign = 1.0 if maximize else -1.0
    with torch.enable_grad():
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = loss_fn(model(x + delta), target).sum()
            (grad,) = torch.autograd.grad(loss, delta)
            with torch.no_grad():
                delta = delta + sign * step_size * grad / _per_sample_norm(grad).clamp_min(1e-12)
                if math.isfinite(eps):
                    delta = delta * (eps / _per_sample_norm(delta).clamp_min(1e-12)).clamp(max=1.0)
                delta = (x + delta).clamp(0.0, 1.0) - x
    return (x + delta).detach()
