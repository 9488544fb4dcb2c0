import pytorch_lightning as pl
import torch

from dfm_lightning.data import OriginDataModule
from dfm_lightning.evaluation import evaluate_robustness
from dfm_lightning.evaluation import Robustness
from dfm_lightning.modules import Classifier, Distiller, load_module

CPU = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)


def test_digits_training_learns_and_checkpoint_loads_weights_only(tmp_path):
    pl.seed_everything(0)
    dm = OriginDataModule("digits", batch_size=64)
    model = Classifier("lenet", lr=3e-3)
    trainer = pl.Trainer(max_epochs=6, enable_checkpointing=False, **CPU)
    trainer.fit(model, datamodule=dm)
    acc = trainer.test(model, datamodule=dm, verbose=False)[0]["test/acc"]
    assert acc > 0.85  # chance is 0.10
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    ckpt = torch.load(tmp_path / "m.ckpt", weights_only=True)  # plain hyper-parameters only
    assert ckpt["hyper_parameters"]["arch"] == "lenet"
    loaded = load_module(tmp_path / "m.ckpt")
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model.eval()(x))
    robust, n = evaluate_robustness(loaded.model, dm, Robustness(eps=[0, 2], steps=5, num_test_images=100),
                                    trainer=pl.Trainer(**CPU))
    assert n == 100 and robust["0"] > 0.8 and robust["2"] < robust["0"]


def test_adversarial_training_step_uses_pgd_examples():
    pl.seed_everything(0)
    model = Classifier("lenet", adv_eps=1.0, adv_steps=3)
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    adv = model.adversarial(x, y)
    assert model.model.training  # mode restored
    norms = (adv - x).flatten(1).norm(dim=1)
    assert (norms <= 1.0 + 1e-4).all() and (norms > 0.1).all()
    assert all(p.grad is None for p in model.parameters())


def test_distiller_loss_is_mean_squared_l2():
    from dfm_lightning.modules.distill import logit_l2

    z, t = torch.zeros(2, 3), torch.tensor([[1.0, 2.0, 2.0], [0.0, 0.0, 1.0]])
    assert logit_l2(z, t).item() == (9 + 1) / 2
    assert "adv_eps" not in Distiller("lenet").hparams


def test_diverging_distillation_stops_with_one_clear_error():
    import pytest

    from dfm_lightning.errors import UserError

    d = Distiller("lenet")
    batch = (torch.rand(4, 1, 28, 28), torch.full((4, 10), float("inf")))
    with pytest.raises(UserError, match="DtM diverged.*lower the learning rate"):
        d.training_step(batch, 0)
