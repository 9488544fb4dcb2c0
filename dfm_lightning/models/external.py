"""Bring your own architecture: any ``nn.Module`` (or builder function) by import path, e.g. a torchvision model,
wrapped so that it takes pixels in [0, 1] like every model here.

``create_model("external", class_path="torchvision.models.resnet18", init_args={"num_classes": 10},
mean=[...], std=[...], resize=224)`` builds ``resnet18(num_classes=10)`` behind a :class:`Preprocess` that resizes
and normalises inside the model, so every attack still works in [0, 1] pixel space. The network is freshly
initialised; trained weights come from a model source file (:func:`dfm_lightning.modules.checkpoint.load_module`).
"""
import importlib

import torch
from torch import nn
from torch.nn import functional as F

from dfm_lightning.errors import UserError
from dfm_lightning.models.registry import register_model


class Preprocess(nn.Module):
    """[0, 1] pixels -> what the wrapped network was trained on: optional resize (bilinear) and mean/std."""

    def __init__(self, net: nn.Module, mean: list[float] | None, std: list[float] | None, resize: int | None,
                 num_classes: int | None):
        super().__init__()
        self.net, self.resize, self.num_classes = net, resize, num_classes
        self.register_buffer("mean", torch.tensor(mean if mean else [0.0]).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std if std else [1.0]).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.resize and x.shape[-1] != self.resize:
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False)
        return self.net((x - self.mean) / self.std)


def import_object(path: str):
    """``package.module.Name`` -> the object."""
    module, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as e:
        raise UserError(f"class_path {path!r} cannot be imported ({type(e).__name__}: {e}); give a full import "
                        "path such as torchvision.models.resnet18 or mypackage.models.MyNet") from None


@register_model
def external(class_path: str, init_args: dict | None = None, mean: list[float] | None = None,
             std: list[float] | None = None, resize: int | None = None, in_channels: int = 3, num_classes: int | None = 10,
             input_size: int = 32) -> nn.Module:
    """``class_path(**init_args)`` (a class or a builder function) behind :class:`Preprocess`. ``in_channels``,
    ``num_classes`` and ``input_size`` describe the data; the network's output width is checked against
    ``num_classes`` on a test input (``num_classes`` None: taken from it)."""
    net = import_object(class_path)(**(init_args or {}))
    if not isinstance(net, nn.Module):
        raise UserError(f"class_path {class_path!r} built a {type(net).__name__}, not a torch.nn.Module")
    if len(mean or []) not in (0, 1, in_channels) or len(std or []) not in (0, 1, in_channels):
        raise UserError(f"mean and std need 1 or {in_channels} values (one per channel), got {mean}, {std}")
    model = Preprocess(net, mean, std, resize, num_classes)
    with torch.no_grad():
        was = net.training
        try:
            out = model.eval()(torch.zeros(2, in_channels, input_size, input_size))
        except RuntimeError as e:
            raise UserError(f"{class_path} fails on {in_channels}x{input_size}x{input_size} images, the data's shape "
                            f"({str(e).splitlines()[0][:200]}); declare the input_shape it takes, or a resize") from None
        net.train(was)
    if num_classes is None:  # asked to say it: the width of its output
        model.num_classes = int(out.shape[1])
    elif out.ndim != 2 or out.shape[1] != num_classes:
        raise UserError(f"{class_path} gives outputs of shape {tuple(out.shape[1:])} for {in_channels}x{input_size}"
                        f"x{input_size} images, but the data has {num_classes} classes; set its init_args (e.g. "
                        "num_classes) or declare the right num_classes / input_shape")
    return model
