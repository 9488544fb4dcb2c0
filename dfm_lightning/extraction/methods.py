"""DfM methods by name, like the models' registry: ``create_method("virtual_logits")``.

A method turns a shard of substitute images x_s into extracted images x'. It draws its per-sample ``targets`` on
the loader side (a pure function of (seed, sample index), so a shard is reproducible), and ``objective`` gives the
network, target and per-sample loss that L2-PGD *minimises* from x_s. Every method stores (x', Z(x')), the model's
logits; ``dtm_loss`` is the distillation loss its data is meant for. Adding a method = one file here with a
``@register_method`` class (and its import in ``extraction/__init__.py``).
"""
import torch
from torch import nn

from dfm_lightning.errors import UserError

_METHODS: dict[str, type] = {}


def register_method(cls: type) -> type:
    _METHODS[cls.name] = cls
    return cls


def list_methods() -> list[str]:
    return sorted(_METHODS)


def create_method(name: str, **kwargs) -> "DfMMethod":
    if name not in _METHODS:
        raise UserError(f"unknown DfM method {name!r}; known: {', '.join(list_methods())}")
    return _METHODS[name](**kwargs)


class DfMMethod:
    """The interface: ``optimises`` False keeps x' = x_s whatever the PGD budget."""

    name = ""
    dtm_loss = "logit_l2"
    optimises = True

    def check(self, model: nn.Module) -> None:
        """Raise a one-line UserError, before any work, if the method cannot run on ``model``; any model by default."""

    def targets(self, indices: range | list[int], seed: int, num_classes: int) -> torch.Tensor:
        """Per-sample targets for PGD (any tensor with one row per sample); none by default."""
        return torch.zeros(len(indices))

    def objective(self, model: nn.Module, x_s: torch.Tensor, targets: torch.Tensor):
        """(network to attack, its target, per-sample loss(output, target)) that PGD minimises."""
        raise NotImplementedError

    def metrics(self, logits: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """How close a shard's final iterates came to the targets (means over the shard); none by default."""
        return {}
