"""A model defined outside the package, for the bring-your-own-model tests (imported by class path)."""
from torch import nn


class TinyNet(nn.Module):
    """Expects inputs normalised to mean 0.1307, std 0.3081 (MNIST's), like most published MNIST models."""

    def __init__(self, num_classes: int = 10, width: int = 8):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4))
        self.head = nn.Linear(width * 16, num_classes)

    def forward(self, x):
        return self.head(self.features(x).flatten(1))
