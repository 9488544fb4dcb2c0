"""Bring your own model: a model source file (class path or registry architecture + a plain weights file, with the
input normalisation declared) is accepted wherever a checkpoint is. No network: the weights are made here."""
import json
from pathlib import Path

import pytest
import torch
import yaml
from byo_models import TinyNet

from dfm_lightning.attacks import cross_entropy_per_sample, l2_pgd
from dfm_lightning.errors import UserError
from dfm_lightning.models import create_model
from dfm_lightning.modules import checkpoint_info, load_module, save_module

MNIST_NORM = {"mean": [0.1307], "std": [0.3081]}


def source(tmp_path, name="m.yaml", **spec) -> str:
    (tmp_path / name).write_text(yaml.safe_dump(spec))
    return str(tmp_path / name)


def test_torchvision_model_with_local_weights_normalises_inside(tmp_path):
    torchvision = pytest.importorskip("torchvision")
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10).eval()
    torch.save(net.state_dict(), tmp_path / "r18.pt")
    src = source(tmp_path, class_path="torchvision.models.resnet18", init_args={"num_classes": 10}, weights="r18.pt",
                 input_shape=[3, 32, 32], mean=[0.5, 0.5, 0.5], std=[0.25, 0.25, 0.25], resize=48)
    module = load_module(src)
    x = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        ref = net((torch.nn.functional.interpolate(x, size=(48, 48), mode="bilinear") - 0.5) / 0.25)
        assert torch.allclose(module(x), ref, atol=1e-5)  # pixels in [0, 1] in, the network's own inputs inside
    info = checkpoint_info(src)
    assert (info["in_channels"], info["input_size"], info["num_classes"]) == (3, 32, 10)


def test_class_path_module_attacks_stay_in_pixel_space_and_it_becomes_a_checkpoint(tmp_path):
    torch.manual_seed(0)
    torch.save(TinyNet().state_dict(), tmp_path / "tiny.pt")
    src = source(tmp_path, class_path="byo_models.TinyNet", weights="tiny.pt", input_shape=[1, 28], **MNIST_NORM)
    module = load_module(src)
    assert module.hparams.num_classes == 10  # read from the network's output
    x, y = torch.rand(8, 1, 28, 28), torch.randint(0, 10, (8,))
    adv = l2_pgd(module.model, x, y, cross_entropy_per_sample, eps=2.0, steps=5, step_size=0.5)
    assert adv.min() >= 0 and adv.max() <= 1 and (adv - x).flatten(1).norm(dim=1).max() <= 2.0 + 1e-4
    save_module(module, tmp_path / "m0.ckpt")  # what a chain's gen0/model.ckpt becomes
    torch.load(tmp_path / "m0.ckpt", weights_only=True)
    with torch.no_grad():
        assert torch.equal(load_module(tmp_path / "m0.ckpt")(x), module(x))


def test_registry_architecture_with_a_plain_state_dict(tmp_path):
    torch.manual_seed(0)
    net = create_model("lenet", in_channels=1, num_classes=10, input_size=28).eval()
    torch.save({"state_dict": net.state_dict()}, tmp_path / "lenet.pt")  # a Lightning-style wrapper is unwrapped
    src = source(tmp_path, arch="lenet", weights="lenet.pt", input_shape=[1, 28, 28], num_classes=10)
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(load_module(src)(x), net(x))


@pytest.mark.parametrize("spec,needle", [
    ({"class_path": "byo_models.TinyNet", "weights": "tiny.pt", "input_shape": [1, 28], "num_classes": 5},
     "data has 5 classes"),
    ({"class_path": "byo_models.NoSuchNet", "weights": "tiny.pt", "input_shape": [1, 28]}, "cannot be imported"),
    ({"class_path": "byo_models.TinyNet", "init_args": {"width": 4}, "weights": "tiny.pt", "input_shape": [1, 28]},
     "do not fit"),
    ({"class_path": "byo_models.TinyNet", "weights": "pickled.pt", "input_shape": [1, 28]}, "weights_only"),
    ({"class_path": "byo_models.TinyNet", "weights": "tiny.pt"}, "input_shape"),
])
def test_a_bad_model_source_is_one_line(tmp_path, spec, needle):
    torch.save(TinyNet().state_dict(), tmp_path / "tiny.pt")
    torch.save(TinyNet(), tmp_path / "pickled.pt")  # a pickled module: refused, never unpickled
    with pytest.raises(UserError, match=needle) as e:
        load_module(source(tmp_path, **spec))
    assert "\n" not in str(e.value)


def test_chain_from_a_model_source_checks_classes_first_then_runs(tmp_path, monkeypatch):
    from dfm_lightning.commands import build_chain

    monkeypatch.chdir(tmp_path)
    torch.save(TinyNet(num_classes=7).state_dict(), tmp_path / "seven.pt")
    wrong = source(tmp_path, "seven.yaml", class_path="byo_models.TinyNet", init_args={"num_classes": 7},
                   weights="seven.pt", input_shape=[1, 28], **MNIST_NORM)
    args = ["--data.name", "digits", "--generations", "1", "--trainer", "{accelerator: cpu, enable_progress_bar: false}",
            "--extraction.substitute", "noise", "--extraction.num_samples", "64", "--extraction.shard_size", "64",
            "--extraction.steps", "2", "--distill_epochs", "1", "--distill_data.val_size", "16",
            "--robustness.eps", "[0]", "--robustness.num_test_images", "32", "--wandb.enabled", "false"]
    with pytest.raises(UserError, match="classes"):
        build_chain(["--run_dir", "wrong", "--m0_ckpt_path", wrong, *args])
    assert not (tmp_path / "wrong").exists()  # refused before any work
    torch.manual_seed(0)
    torch.save(TinyNet().state_dict(), tmp_path / "tiny.pt")
    good = source(tmp_path, "tiny.yaml", class_path="byo_models.TinyNet", weights="tiny.pt", input_shape=[1, 28],
                  **MNIST_NORM)
    build_chain(["--run_dir", "run", "--m0_ckpt_path", good, *args]).run()
    rows = json.loads((tmp_path / "run" / "results.json").read_text())["generations"]
    assert [r["generation"] for r in rows] == [0, 1]
    assert checkpoint_info(tmp_path / "run" / "gen1" / "model.ckpt")["arch"] == "external"  # students: M0's network


def test_dfm_robustness_and_extract_take_a_model_source(tmp_path, monkeypatch):
    import atexit

    from conftest import CONFIGS, dfm_in_process

    at_exit = []
    monkeypatch.setattr(atexit, "register", lambda fn, *args, **kw: at_exit.append((fn, args, kw)))
    torch.manual_seed(0)
    torch.save(TinyNet().state_dict(), tmp_path / "tiny.pt")
    src = source(tmp_path, class_path="byo_models.TinyNet", weights="tiny.pt", input_shape=[1, 28], **MNIST_NORM)
    proc = dfm_in_process("robustness", "--config", str(CONFIGS / "fit" / "digits_lenet.yaml"), "--ckpt_path", src,
                          "--protocol.eps", "[0, 1]", "--protocol.steps", "2", "--protocol.num_test_images", "40",
                          "--trainer.logger", "false", "--trainer.enable_progress_bar", "false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "(40 test images, 2 PGD steps)" in proc.stdout
    import shutil

    (fn, args, kw), = [c for c in at_exit if c[0] is shutil.rmtree]  # the checkpoint converted for LightningCLI
    # is removed when the command ends
    converted = Path(args[0])
    assert converted.name.startswith("dfm-source-") and converted.is_dir()
    fn(*args, **kw)
    assert not converted.exists()
    proc = dfm_in_process("extract", "--ckpt_path", src, "--out_dir", "d", "--extraction.substitute", "noise",
                          "--extraction.num_samples", "32", "--extraction.shard_size", "32", "--extraction.steps", "2",
                          "--trainer.enable_progress_bar", "false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads((tmp_path / "d" / "manifest.json").read_text())["num_samples"] == 32
