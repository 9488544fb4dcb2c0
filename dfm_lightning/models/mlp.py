"""A small MLP: the cheapest second architecture for cross-architecture DtM on 28x28 data."""
from torch import nn

from dfm_lightning.models.registry import Normalize, register_model


@register_model
def mlp(in_channels: int = 1, num_classes: int = 10, input_size: int = 28) -> nn.Module:
    """Two hidden layers of 256 ReLU units on the flattened image."""
    return nn.Sequential(
        Normalize(), nn.Flatten(),
        nn.Linear(in_channels * input_size * input_size, 256), nn.ReLU(inplace=True),
        nn.Linear(256, 256), nn.ReLU(inplace=True),
        nn.Linear(256, num_classes),
    )
