"""The GPU fast path (bf16 autocast, channels_last, torch.compile), checked on the CPU where it applies."""
import pytorch_lightning as pl
import torch
from torch import nn

from dfm_lightning.attacks import cross_entropy_per_sample, l2_pgd
from dfm_lightning.callbacks import FastPath, with_fast_path
from dfm_lightning.models import create_model, freeze
from dfm_lightning.models.fast import accelerate, restore
from dfm_lightning.modules import Classifier, load_module


def lenet() -> nn.Module:
    torch.manual_seed(0)
    return freeze(create_model("lenet", in_channels=1, num_classes=10, input_size=28))


def test_bf16_channels_last_keeps_weights_and_logits_close():
    net, x = lenet(), torch.rand(16, 1, 28, 28)
    eager, keys = net(x), list(net.state_dict())
    seen = []
    net[1].register_forward_hook(lambda m, i, o: seen.append((o.dtype, o.is_contiguous(memory_format=torch.channels_last))))
    accelerate(net, torch.device("cpu"), compile=False)
    fast = net(x)
    assert seen[-1] == (torch.bfloat16, True)  # the convolutions run in bf16, NHWC
    assert fast.dtype == torch.float32 and list(net.state_dict()) == keys
    assert (fast - eager).abs().max() < 0.05 * eager.abs().max() and (fast.argmax(1) == eager.argmax(1)).float().mean() > 0.9
    adv = l2_pgd(net, x, eager.argmax(1), cross_entropy_per_sample, eps=2.0, steps=3, step_size=1.0)
    assert adv.dtype == torch.float32 and adv.min() >= 0 and adv.max() <= 1
    assert ((adv - x).flatten(1).norm(dim=1) <= 2.0 + 1e-4).all()
    restore(net)
    assert seen.clear() is None and torch.equal(net(x), eager) and seen[-1][0] == torch.float32


def test_compile_gives_the_eager_result():
    torch.manual_seed(0)
    net, x = freeze(create_model("mlp", in_channels=1, num_classes=10, input_size=28)), torch.rand(8, 1, 28, 28)
    z = torch.randn(8, 10)
    loss = lambda out, t: (out - t).norm(dim=1)  # noqa: E731
    eager = l2_pgd(net, x, z, loss, steps=3, step_size=0.1, maximize=False)
    accelerate(net, torch.device("cpu"), bf16=False, channels_last=False)
    assert net._compiled_call_impl is not None
    assert torch.allclose(l2_pgd(net, x, z, loss, steps=3, step_size=0.1, maximize=False), eager, atol=1e-5)


def test_a_compile_failure_falls_back_to_eager_with_one_line(monkeypatch):
    def broken(self, *args, **kwargs):
        def fail(*a, **k):
            raise RuntimeError("no C compiler\nmore detail")
        self._compiled_call_impl = fail

    monkeypatch.setattr(nn.Module, "compile", broken)
    net, x, lines = lenet(), torch.rand(4, 1, 28, 28), []
    eager = net(x)
    accelerate(net, torch.device("cpu"), bf16=False, channels_last=False, log=lines.append)
    assert torch.equal(net(x), eager) and torch.equal(net(x), eager)
    assert lines == ["dfm: torch.compile failed for Sequential (RuntimeError: no C compiler); running it eagerly"]


def test_a_backward_compile_failure_falls_back_before_any_backward(monkeypatch):
    from torch._dynamo.backends.common import aot_autograd

    def no_backward(gm, example_inputs):
        raise RuntimeError("backward lowering failed")

    compile = nn.Module.compile  # the real compiler for the forward, a broken one for the backward
    monkeypatch.setattr(nn.Module, "compile", lambda self: compile(self, backend=aot_autograd(
        fw_compiler=lambda gm, example_inputs: gm, bw_compiler=no_backward)))
    net, x, z, lines = lenet(), torch.rand(4, 1, 28, 28), torch.randn(4, 10), []
    loss = lambda out, t: (out - t).norm(dim=1)  # noqa: E731
    eager = l2_pgd(net, x, z, loss, steps=2, step_size=0.1, maximize=False)
    accelerate(net, torch.device("cpu"), bf16=False, channels_last=False, log=lines.append)
    assert torch.equal(l2_pgd(net, x, z, loss, steps=2, step_size=0.1, maximize=False), eager)
    assert lines == ["dfm: torch.compile failed for Sequential (RuntimeError: backward lowering failed); running it eagerly"]


def test_fast_path_callback_is_on_for_cuda_only_and_trains_in_bf16(tmp_path):
    assert len(with_fast_path(None)) == 1 and len(with_fast_path(with_fast_path(None))) == 1
    cpu = pl.Trainer(accelerator="cpu", logger=False)
    assert not FastPath().active(cpu) and FastPath(enabled=True).active(cpu)

    module, dtypes = Classifier(arch="lenet"), []
    module.model[1].register_forward_hook(lambda m, i, o: dtypes.append(o.dtype))
    data = torch.utils.data.TensorDataset(torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,)))
    trainer = pl.Trainer(accelerator="cpu", max_steps=2, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False,
                         callbacks=[FastPath(enabled=True, compile=False)])
    trainer.fit(module, torch.utils.data.DataLoader(data, batch_size=32))
    assert dtypes == [torch.bfloat16] * 2 and "forward" not in module.model.__dict__  # restored at teardown
    trainer.save_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    loaded = load_module(tmp_path / "m.ckpt")  # weights_only=True inside; the same keys as an eager checkpoint
    assert list(loaded.state_dict()) == list(Classifier(arch="lenet").state_dict())


def test_device_loader_gives_the_cpu_loaders_batches_and_splits_ranks():
    from dfm_lightning.data.origin import DeviceLoader, ImageDataset, OriginDataModule

    ds = ImageDataset(torch.randint(0, 256, (100, 1, 4, 4), dtype=torch.uint8), torch.arange(100))
    dm = OriginDataModule(batch_size=32)
    torch.manual_seed(1)
    cpu = [b for b in dm.loader(ds, shuffle=True)]
    torch.manual_seed(1)
    dev = list(DeviceLoader(ds, 32, "cpu", chunk=30))  # loaded in chunks of 30
    assert len(dev) == len(cpu) == 4 and all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(cpu, dev))
    ranks = [DeviceLoader(ds, 16, "cpu", num_replicas=3, rank=r) for r in range(3)]
    seen = []
    for r in ranks:
        torch.manual_seed(1)
        seen.append(torch.cat([y for _, y in r]))
    assert [len(r) for r in ranks] == [3, 3, 3] and [len(s) for s in seen] == [34, 34, 34]
    assert set(torch.cat(seen).tolist()) == set(range(100))  # every sample; two repeated to even out the ranks


def test_training_on_device_gives_the_same_weights():
    from dfm_lightning.data.origin import OriginDataModule

    weights = []
    for on_device in (False, True):
        pl.seed_everything(0, verbose=False)
        module = Classifier(arch="lenet")
        trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=5, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(module, datamodule=OriginDataModule("digits", batch_size=64, augment=True, on_device=on_device))
        assert type(trainer.train_dataloader).__name__ == ("DeviceLoader" if on_device else "DataLoader")
        weights.append(module.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_the_documented_override_parses_in_every_dialect(tmp_path):
    import yaml
    from conftest import CONFIGS, dfm_in_process

    for cmd, config in (("fit", "fit/digits_lenet.yaml"), ("chain", "quickstart.yaml")):
        proc = dfm_in_process(cmd, "--config", str(CONFIGS / config), "--trainer.callbacks+=FastPath",
                              "--trainer.callbacks.compile", "false", "--print_config", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        printed = yaml.safe_load(proc.stdout)["trainer"]["callbacks"]
        assert printed == [{"class_path": "dfm_lightning.callbacks.FastPath",
                            "init_args": {"enabled": None, "bf16": True, "channels_last": True, "compile": False}}]
    from dfm_lightning.commands import build_chain

    runner = build_chain(["--config", str(CONFIGS / "quickstart.yaml"), "--trainer.callbacks+=FastPath",
                          "--trainer.callbacks.enabled", "false", "--run_dir", str(tmp_path / "run")])
    fast = [c for c in runner._with_checks(runner.trainer_kwargs)["callbacks"] if isinstance(c, FastPath)]
    assert len(fast) == 1 and fast[0].enabled is False  # the user's, not a second default one
    # and a chain records it (results.json and chain_config.json are JSON: the callback as class path + settings)
    record = runner._results([])["config"]["trainer"]["callbacks"]
    assert record == [{"class_path": "dfm_lightning.callbacks.FastPath",
                       "init_args": {"enabled": False, "bf16": True, "channels_last": True, "compile": True}}]
