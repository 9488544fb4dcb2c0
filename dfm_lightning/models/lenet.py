"""LeNet-style CNNs (max-pool) for 28x28 inputs such as MNIST and the embedded digits.

``lenet`` is LeNet-5 and takes its widths, activation and batch norm as arguments (``create_model('lenet',
convs=[16, 32], fcs=[256])``); ``lenet_wide`` names the MNIST chain's width, which made logit distillation
stable across seeds at 1.6x the CPU cost of a PGD step (DfM runs tens of them per extracted image).
"""
from torch import nn

from dfm_lightning.models.registry import Normalize, register_model

_ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "leaky_relu": lambda: nn.LeakyReLU(0.1, inplace=True)}


@register_model
def lenet(in_channels: int = 1, num_classes: int = 10, input_size: int = 28, convs: tuple[int, int] = (6, 16),
          fcs: tuple[int, ...] = (120, 84), activation: str = "relu", batch_norm: bool = False) -> nn.Module:
    """conv5(pad 2)-pool-conv5-pool, then linear layers of widths ``fcs``, then the logits. Defaults: LeNet-5
    (conv6-pool-conv16-pool-fc120-fc84); any input_size >= 28 with (input_size / 2 - 4) even.
    ``activation``: relu or leaky_relu (slope 0.1); ``batch_norm`` adds BatchNorm after every conv and hidden linear."""
    act = _ACTIVATIONS[activation]
    bn2, bn1 = (nn.BatchNorm2d, nn.BatchNorm1d) if batch_norm else (lambda c: nn.Identity(), lambda c: nn.Identity())
    feat = (input_size // 2 - 4) // 2
    c1, c2 = convs
    layers: list[nn.Module] = [
        Normalize(),
        nn.Conv2d(in_channels, c1, 5, padding=2), bn2(c1), act(), nn.MaxPool2d(2),
        nn.Conv2d(c1, c2, 5), bn2(c2), act(), nn.MaxPool2d(2),
        nn.Flatten(),
    ]
    width = c2 * feat * feat
    for f in fcs:
        layers += [nn.Linear(width, f), bn1(f), act()]
        width = f
    # Identity placeholders are dropped, so the default module list (and its state-dict keys) is LeNet-5's own
    return nn.Sequential(*[m for m in layers if not isinstance(m, nn.Identity)], nn.Linear(width, num_classes))


@register_model
def lenet_wide(in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> nn.Module:
    """LeNet with 16/32 conv channels and one fc256 layer: the MNIST chain's default.

    LeNet-5's 6 first-layer filters make logit distillation depend on the seed (M1 96.7-98.9% on one D1 over 3 seeds);
    this width fixed it at 1.6x the CPU extraction cost (docs/RESULTS.md, "Why the non-robust 50k chain decayed").
    """
    return lenet(in_channels, num_classes, input_size, convs=(16, 32), fcs=(256,))
