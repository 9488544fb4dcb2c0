"""DfM methods: each one's objective falls under PGD (or, for the baseline, nothing moves), its data has the stored
shapes and types, and a student trains on it with the method's declared DtM loss. The paper's method is unchanged
(its shards are compared byte for byte with an extraction made before methods were pluggable in
tests/test_extraction.py's fixtures and in the chain tests)."""
import pytest
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from dfm_lightning.data import ExtractedDataset
from dfm_lightning.data.origin import keep_batch
from dfm_lightning.extraction import ExtractionConfig, create_method, extract, list_methods
from dfm_lightning.models import create_model
from dfm_lightning.modules import Distiller


@pytest.fixture(scope="module")
def model():
    """LeNet after two epochs on the embedded digits (seconds): a model with confident logits, as DfM meets them."""
    from dfm_lightning.data import OriginDataModule
    from dfm_lightning.modules import Classifier

    pl.seed_everything(0, verbose=False)
    m0 = Classifier("lenet", lr=3e-3)
    pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False).fit(m0, datamodule=OriginDataModule("digits", batch_size=64))
    return m0.model.eval()


@pytest.fixture(scope="module")
def bn_model():
    """A small convolutional net with batch norm whose running statistics are those of the digits (no training)."""
    from dfm_lightning.data import OriginDataModule

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3, padding=1), torch.nn.BatchNorm2d(8, momentum=None),
                              torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Conv2d(8, 16, 3, padding=1),
                              torch.nn.BatchNorm2d(16, momentum=None), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1),
                              torch.nn.Flatten(), torch.nn.Linear(16, 10))
    data = OriginDataModule("digits", batch_size=256)
    data.setup("fit")
    with torch.no_grad():
        for x, _ in data.train_dataloader():
            net(x)  # train mode: the running statistics become the training set's (momentum None: plain averages)
    return net.eval()


def model_for(name, model, bn_model):
    return bn_model if name == "bn_statistics" else model


def test_the_registry_holds_the_five_methods():
    assert list_methods() == ["bn_statistics", "model_labels", "random_target_ce", "representation", "virtual_logits"]
    import importlib

    for name in list_methods():
        m = create_method(name)
        assert m.dtm_loss in ("logit_l2", "cross_entropy") and m.__module__.endswith(name)  # one file per method
        doc = importlib.import_module(m.__module__).__doc__
        assert f"``{name}``" in doc and any(year in doc for year in ("2019", "2020"))  # says what it is, cites a paper


@pytest.mark.parametrize("name", ["virtual_logits", "random_target_ce", "representation", "bn_statistics"])
def test_pgd_lowers_each_methods_objective(model, bn_model, name):
    from dfm_lightning.attacks import l2_pgd

    method = create_method(name)
    x_s = torch.rand(16, 1, 28, 28)
    net, target, loss = method.objective(model_for(name, model, bn_model), x_s,
                                         method.targets(range(16), seed=0, num_classes=10))
    x = l2_pgd(net, x_s, target, loss, steps=40, step_size=0.5, maximize=False)
    with torch.no_grad():
        before, after = loss(net(x_s), target).mean(), loss(net(x), target).mean()
    assert after < 0.95 * before and 0 <= x.min() and x.max() <= 1


def test_targets_are_a_pure_function_of_seed_and_index():
    for name in list_methods():
        m = create_method(name)
        assert torch.equal(m.targets(range(10, 20), 3, 10), m.targets(range(10, 20), 3, 10))


@pytest.mark.parametrize("name", list_methods())
def test_each_methods_dataset_has_the_stored_shapes_and_trains_with_its_loss(model, bn_model, name, tmp_path):
    cfg = ExtractionConfig(substitute="noise", num_samples=96, shard_size=48, steps=5, step_size=0.2, method=name)
    ds = extract(model_for(name, model, bn_model), tmp_path / name, cfg, seed=1, input_shape=(1, 28),
                 trainer_kwargs={"accelerator": "cpu", "enable_progress_bar": False})
    assert isinstance(ds, ExtractedDataset) and len(ds) == 96
    x, z = ds.__getitems__(list(range(96)))
    assert x.shape == (96, 1, 28, 28) and z.shape == (96, 10) and x.dtype == z.dtype == torch.float32
    assert 0 <= x.min() and x.max() <= 1
    metrics = ds.manifest["metrics"]
    assert (metrics["delta_l2"] == 0) == (name == "model_labels")  # the baseline leaves the substitutes as they are
    student = Distiller("lenet", loss=create_method(name).dtm_loss)
    loader = DataLoader(ds, batch_size=32, shuffle=True, collate_fn=keep_batch)
    first = student.loss_fn(student.model(x[:32]), z[:32]).item()
    pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
               enable_model_summary=False).fit(student, loader)
    assert student.loss_fn(student.model(x[:32]), z[:32]).item() < first


def test_hard_label_distillation_uses_the_stored_argmax(model):
    student = Distiller("lenet", loss="cross_entropy")
    z = torch.randn(4, 10)
    logits = student.model(torch.rand(4, 1, 28, 28))
    assert torch.isclose(student.loss_fn(logits, z), torch.nn.functional.cross_entropy(logits, z.argmax(1)))


def test_bn_statistics_brings_the_shards_statistics_to_the_models(bn_model):
    from dfm_lightning.attacks import l2_pgd
    from dfm_lightning.extraction.bn_statistics import WithBNDistance

    method = create_method("bn_statistics")
    x_s = torch.rand(64, 1, 28, 28)  # uniform noise: statistics far from the digits'
    net, target, loss = method.objective(bn_model, x_s, method.targets(range(64), seed=0, num_classes=10))
    x = l2_pgd(net, x_s, target, loss, eps=3.0, steps=20, step_size=0.3, maximize=False)
    ce_only = l2_pgd(bn_model, x_s, target, lambda z, t: torch.nn.functional.cross_entropy(z, t, reduction="none"),
                     eps=3.0, steps=20, step_size=0.3, maximize=False)  # the same PGD without the statistics term
    with torch.no_grad():
        before, after, without = net(x_s)[:, -1], net(x)[:, -1], net(ce_only)[:, -1]
        assert torch.equal(net(x_s)[:, :-1], bn_model(x_s))  # the logits, unchanged, and no hook left behind
    assert after.unique().numel() == 1 and after[0] < 0.7 * before[0] and after[0] < 0.8 * without[0], (before, after, without)
    assert not any(m._forward_hooks for m in bn_model.modules())
    assert isinstance(WithBNDistance(bn_model).norms[0], torch.nn.BatchNorm2d)


@pytest.mark.parametrize("name", ["bn_statistics", "representation"])
def test_a_method_the_model_cannot_take_is_one_line_before_anything_is_written(name, tmp_path):
    from dfm_lightning.errors import UserError

    no_norms_or_linear = torch.nn.Sequential(torch.nn.Conv2d(1, 10, 28), torch.nn.Flatten())  # 10 logits
    cfg = ExtractionConfig(substitute="noise", num_samples=8, shard_size=8, steps=1, method=name)
    with pytest.raises(UserError) as e:
        extract(no_norms_or_linear, tmp_path / "d", cfg, input_shape=(1, 28))
    assert name.split("_")[0] in str(e.value) and "\n" not in str(e.value) and not (tmp_path / "d").exists()
