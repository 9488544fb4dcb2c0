"""LeNet-style CNNs (ReLU, max-pool) for 28x28 inputs such as MNIST and the embedded digits.

``lenet`` is LeNet-5; ``lenet_wide`` widens the convs, which made logit distillation stable across seeds at
1.6x the CPU cost of a PGD step (DfM runs tens of them per extracted image).
"""
from torch import nn

from dfm_lightning.models import Normalize, register_model


def _lenet(in_channels: int, num_classes: int, input_size: int, convs: tuple[int, int], fcs: tuple[int, ...]) -> nn.Module:
    """conv5(pad 2)-pool-conv5-pool, then ReLU linear layers of widths ``fcs``, then the logits."""
    feat = (input_size // 2 - 4) // 2
    c1, c2 = convs
    layers: list[nn.Module] = [
        Normalize(),
        nn.Conv2d(in_channels, c1, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Flatten(),
    ]
    width = c2 * feat * feat
    for f in fcs:
        layers += [nn.Linear(width, f), nn.ReLU(inplace=True)]
        width = f
    return nn.Sequential(*layers, nn.Linear(width, num_classes))


@register_model
def lenet(in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> nn.Module:
    """LeNet-5: conv6-pool-conv16-pool-fc120-fc84; any input_size >= 28 with (input_size / 2 - 4) even."""
    return _lenet(in_channels, num_classes, input_size, (6, 16), (120, 84))


@register_model
def lenet_wide(in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> nn.Module:
    """LeNet with 16/32 conv channels and one fc256 layer: the MNIST chain's default.

    LeNet-5's 6 first-layer filters make logit distillation depend on the seed (M1 96.7-98.9% on one D1 over 3 seeds);
    this width fixed it at 1.6x the CPU extraction cost (docs/RESULTS.md, "Why the non-robust 50k chain decayed").
    """
    return _lenet(in_channels, num_classes, input_size, (16, 32), (256,))
