import pytest
import torch

from dfm_lightning.errors import UserError
from dfm_lightning.models import create_model, list_models


@pytest.mark.parametrize("name", ["lenet", "lenet_wide", "mlp", "vgg8", "vgg16", "vgg19", "resnet18", "resnet50"])
@pytest.mark.parametrize("channels,num_classes", [(1, 10), (3, 7)])
def test_registry_shapes(name, channels, num_classes):
    size = 28 if name in ("lenet", "lenet_wide", "mlp") else 32
    model = create_model(name, in_channels=channels, num_classes=num_classes, input_size=size).eval()
    with torch.no_grad():
        out = model(torch.rand(2, channels, size, size))
    assert out.shape == (2, num_classes)


def test_vgg8_has_one_conv_between_pools():
    layers = list(create_model("vgg8", in_channels=3))
    kinds = [type(m).__name__ for m in layers if type(m).__name__ in ("Conv2d", "MaxPool2d", "Linear")]
    assert kinds == ["Conv2d", "MaxPool2d"] * 5 + ["Linear"] * 3


def test_unknown_architecture_lists_known():
    with pytest.raises(UserError) as e:
        create_model("alexnet")
    for name in list_models():
        assert name in str(e.value)
