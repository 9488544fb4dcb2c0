"""A timm-style model registry: ``create_model('vgg8', in_channels=3, num_classes=10)``.

Every model takes pixels in [0, 1] and normalises inside, so attacks work in pixel space.
"""
from typing import Callable

from torch import nn

from dfm_lightning.errors import UserError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: add a model constructor to the registry under its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_REGISTRY)


def create_model(name: str, in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> nn.Module:
    """Build a fresh, randomly initialised model by registry name."""
    if name not in _REGISTRY:
        raise UserError(f"unknown architecture {name!r}; known: {', '.join(list_models())}")
    return _REGISTRY[name](in_channels=in_channels, num_classes=num_classes, input_size=input_size)


def num_classes_of(model: nn.Module) -> int:
    """The number of logits a registry model outputs (its last linear layer's width)."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features


class Normalize(nn.Module):
    """Maps [0, 1] pixels to roughly [-1, 1]; lives in the model so attacks stay in pixel space."""

    def forward(self, x):
        return (x - 0.5) / 0.5


from dfm_lightning.models import lenet, mlp, resnet, vgg  # noqa: E402,F401  (registers the architectures)
