"""Architectures by name: ``create_model(name, **kwargs)``. Every model takes pixels in [0, 1] and normalises
inside, so attacks work in pixel space. Adding an architecture = one file here with a ``@register_model`` builder
(and its import below)."""
from dfm_lightning.models.registry import Normalize, create_model, freeze, list_models, num_classes_of, register_model
from dfm_lightning.models import external, lenet, mlp, resnet, vgg  # noqa: E402,F401,I001  (registers the architectures)

__all__ = ["Normalize", "create_model", "freeze", "list_models", "num_classes_of", "register_model"]
