"""VGG with batch norm for 32x32 inputs. vgg8 is the paper's: one conv between each max-pool."""
from torch import nn

from dfm_lightning.models.registry import Normalize, register_model

_CFGS = {
    "vgg8": [64, "M", 128, "M", 256, "M", 512, "M", 512, "M"],
    "vgg16": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "vgg19": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512, "M"],
}


def _vgg(cfg: list, in_channels: int, num_classes: int) -> nn.Module:
    layers: list[nn.Module] = [Normalize()]
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(in_channels, v, 3, padding=1, bias=False), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
            in_channels = v
    # three linear layers, so vgg8 = 5 conv + 3 fc and vgg16 = 13 conv + 3 fc, as the names say
    layers += [
        nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        nn.Linear(512, 512), nn.ReLU(inplace=True),
        nn.Linear(512, 512), nn.ReLU(inplace=True),
        nn.Linear(512, num_classes),
    ]
    return nn.Sequential(*layers)


@register_model
def vgg8(in_channels: int = 3, num_classes: int = 10, input_size: int = 32) -> nn.Module:
    """The paper's CIFAR-10 VGG8 (inputs of at least 32x32)."""
    return _vgg(_CFGS["vgg8"], in_channels, num_classes)


@register_model
def vgg16(in_channels: int = 3, num_classes: int = 10, input_size: int = 32) -> nn.Module:
    """VGG16 with batch norm (inputs of at least 32x32)."""
    return _vgg(_CFGS["vgg16"], in_channels, num_classes)


@register_model
def vgg19(in_channels: int = 3, num_classes: int = 10, input_size: int = 32) -> nn.Module:
    """VGG19 with batch norm (inputs of at least 32x32)."""
    return _vgg(_CFGS["vgg19"], in_channels, num_classes)
