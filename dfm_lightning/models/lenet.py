"""LeNet-5 (ReLU, max-pool) for 28x28 inputs such as MNIST and the embedded digits.

Kept at LeNet-5's width on purpose: DfM runs tens of PGD steps per extracted image, and wider convs make
CPU extraction several times slower.
"""
from torch import nn

from dfm_lightning.models import Normalize, register_model


@register_model
def lenet(in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> nn.Module:
    """LeNet-5: conv6-pool-conv16-pool-fc120-fc84; any input_size >= 28 with (input_size / 2 - 4) even."""
    feat = (input_size // 2 - 4) // 2
    return nn.Sequential(
        Normalize(),
        nn.Conv2d(in_channels, 6, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * feat * feat, 120), nn.ReLU(inplace=True),
        nn.Linear(120, 84), nn.ReLU(inplace=True),
        nn.Linear(84, num_classes),
    )


@register_model
def lenet_wide(in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> nn.Module:
    """LeNet with 16/32 conv channels and one fc256 layer: the MNIST chain's default.

    LeNet-5's 6 first-layer filters make logit distillation depend on the seed (M1 96.7-98.9% on one D1 over 3 seeds);
    this width fixed it at 1.6x the CPU extraction cost (docs/RESULTS.md, "Why lenet_wide").
    """
    feat = (input_size // 2 - 4) // 2
    return nn.Sequential(
        Normalize(),
        nn.Conv2d(in_channels, 16, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * feat * feat, 256), nn.ReLU(inplace=True),
        nn.Linear(256, num_classes),
    )
