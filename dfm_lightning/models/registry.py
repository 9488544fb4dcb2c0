"""The model registry, timm-style: ``create_model('vgg8', in_channels=3, num_classes=10)``.

A builder is a function registered under its own name; keyword arguments pass straight through to it, so a
variant (a width, an activation) is an argument of one builder rather than a new registered name.
"""
import inspect
from typing import Callable

from torch import nn

from dfm_lightning.errors import UserError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: add a model builder to the registry under its function name."""
    _REGISTRY[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    """Names accepted by :func:`create_model`."""
    return sorted(_REGISTRY)


def create_model(name: str, **kwargs) -> nn.Module:
    """Build a fresh, randomly initialised model by registry name; ``kwargs`` go to its builder
    (every builder takes ``in_channels``, ``num_classes`` and ``input_size``; some take more, see their docstrings)."""
    if name not in _REGISTRY:
        raise UserError(f"unknown architecture {name!r}; known: {', '.join(list_models())}")
    builder = _REGISTRY[name]
    params = inspect.signature(builder).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise UserError(f"architecture {name!r} takes no argument {', '.join(unknown)}; it takes {', '.join(params)}")
    return builder(**kwargs)


def num_classes_of(model: nn.Module) -> int:
    """The number of logits a model outputs: its ``num_classes`` if it says, else its last linear layer's width."""
    declared = getattr(model, "num_classes", None)
    return declared if isinstance(declared, int) else [m for m in model.modules() if isinstance(m, nn.Linear)][-1].out_features


def freeze(model: nn.Module) -> nn.Module:
    """Eval mode and no weight gradients: how a previous generation is used by DfM and evaluation."""
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


class Normalize(nn.Module):
    """Maps [0, 1] pixels to roughly [-1, 1]; lives in the model so attacks stay in pixel space."""

    def forward(self, x):
        return (x - 0.5) / 0.5
