"""Loading a checkpoint written by ``dfm fit`` or ``dfm chain``: the module class comes from the checkpoint's own
record, the weights through ``torch.load(..., weights_only=True)`` (no pickle is ever executed).

Wherever a checkpoint is accepted, a *model source file* (``.yaml``/``.json``) brings a model trained elsewhere::

    class_path: torchvision.models.resnet18   # any nn.Module class or builder; or `arch: lenet` (registry)
    init_args: {num_classes: 10}
    weights: resnet18_cifar10.pt              # a state_dict (torch.save, loaded weights_only) or .safetensors;
                                              # relative paths are relative to this file
    input_shape: [3, 32, 32]                  # the data's images (channels, size, size)
    mean: [0.4914, 0.4822, 0.4465]            # the network's input normalisation, applied inside the model
    std: [0.2470, 0.2435, 0.2616]
    resize: 224                               # optional: the network's input size
    num_classes: 10                           # optional: else read from the network's output
"""
from pathlib import Path

import pytorch_lightning as pl
import torch

from dfm_lightning.errors import UserError
from dfm_lightning.modules.classifier import CHECKPOINT_KEY, Classifier, ImageModel
from dfm_lightning.modules.distill import Distiller

MODULES = {cls.__name__: cls for cls in (Classifier, Distiller)}


SOURCE_SUFFIXES = (".yaml", ".yml", ".json")
SOURCE_KEYS = {"arch", "class_path", "init_args", "weights", "input_shape", "mean", "std", "resize", "num_classes"}


def is_source(path: str | Path) -> bool:
    return Path(path).suffix.lower() in SOURCE_SUFFIXES


def checkpoint_info(path: str | Path) -> dict:
    """What a checkpoint holds, without building the model: its hyper-parameters (``arch``, ``arch_kwargs``,
    ``in_channels``, ``input_size``, ``num_classes``, ...) plus ``class``, the LightningModule's class name."""
    if is_source(path):
        module = load_module(path)
        return {**_hparams({"hyper_parameters": dict(module.hparams)}), "class": type(module).__name__}
    ckpt = _load(Path(path))
    return {**_hparams(ckpt), "class": _record(ckpt, path)["class"]}


def _read_source(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise UserError(f"model source file {path} not found")
    try:
        spec = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise UserError(f"model source file {path} is not valid YAML/JSON ({str(e).splitlines()[0]})") from None
    if not isinstance(spec, dict):
        raise UserError(f"model source file {path} must hold a mapping (class_path or arch, weights, input_shape, ...)")
    unknown = sorted(set(spec) - SOURCE_KEYS)
    if unknown or ("arch" in spec) == ("class_path" in spec) or "weights" not in spec or "input_shape" not in spec:
        raise UserError(f"model source file {path} needs exactly one of class_path / arch, plus weights and input_shape "
                        f"(it may set {', '.join(sorted(SOURCE_KEYS))}){'; unknown: ' + ', '.join(unknown) if unknown else ''}")
    shape = spec["input_shape"]
    if not (isinstance(shape, list) and len(shape) in (2, 3) and len(set(shape[1:])) == 1):
        raise UserError(f"model source file {path}: input_shape must be [channels, size] or [channels, size, size] "
                        f"(square images), got {shape}")
    return spec


def _load_weights(file: Path, source: Path) -> dict:
    if not file.is_file():
        raise UserError(f"weights file {file} (named by {source}) not found")
    if file.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError:
            raise UserError(f"{file} is a safetensors file: `pip install safetensors`, or save a state_dict with "
                            "torch.save") from None
        return load_file(str(file))
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"weights file {file} could not be loaded with weights_only=True ({type(e).__name__}); save "
                        "the model's state_dict with torch.save (never a pickled model)") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise UserError(f"weights file {file} holds a {type(state).__name__}, not a state_dict")
    return state


def _from_source(path: Path) -> Classifier:
    """A Classifier around the model a source file describes, with its weights."""
    spec = _read_source(path)
    channels, size = spec["input_shape"][0], spec["input_shape"][1]
    if "arch" in spec:
        arch, arch_kwargs, target = spec["arch"], spec.get("init_args"), "model"
    else:
        arch, target = "external", "model.net"
        arch_kwargs = {"class_path": spec["class_path"], "init_args": spec.get("init_args"), "mean": spec.get("mean"),
                       "std": spec.get("std"), "resize": spec.get("resize")}
    num_classes = spec.get("num_classes")
    if num_classes is None:
        from dfm_lightning.models import create_model, num_classes_of

        probe = create_model(arch, in_channels=channels, input_size=size, num_classes=None, **(arch_kwargs or {})) \
            if arch == "external" else None
        if probe is None:
            raise UserError(f"model source file {path}: declare num_classes for a registry architecture")
        num_classes = num_classes_of(probe)
    module = Classifier(arch, in_channels=channels, num_classes=num_classes, input_size=size, arch_kwargs=arch_kwargs)
    net = module.model.net if target == "model.net" else module.model
    state = _load_weights((path.parent / spec["weights"]), path)
    try:
        net.load_state_dict(state)
    except RuntimeError as e:
        detail = "; ".join(line.strip() for line in str(e).splitlines()[1:3])[:300]
        raise UserError(f"weights {spec['weights']} do not fit the model {path} describes: {detail}") from None
    return module.eval()


def save_module(module: ImageModel, path: str | Path) -> None:
    """Write ``module`` as a checkpoint :func:`load_module` reads (what ``trainer.save_checkpoint(weights_only=True)``
    writes, without a Trainer): a model source becomes a chain's ``gen0/model.ckpt`` this way."""
    torch.save({"state_dict": module.state_dict(), "hyper_parameters": dict(module.hparams),
                CHECKPOINT_KEY: {"class": type(module).__name__, "arch": module.hparams.arch},
                "pytorch-lightning_version": pl.__version__}, path)


def _hparams(ckpt: dict) -> dict:
    # LightningCLI adds _instantiator; DtM checkpoints written before the class record carry a `distill` flag
    return {k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_") and k != "distill"}


def _load(path: Path) -> dict:
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found; pass the path of a .ckpt written by `dfm fit` or `dfm chain`")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise UserError(f"checkpoint {path} could not be loaded with weights_only=True ({type(e).__name__}: "
                        f"{str(e).splitlines()[0][:200]}); pass a checkpoint written by `dfm fit` or `dfm chain`") from None


def _record(ckpt: dict, path) -> dict:
    hp = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hp, dict) or "arch" not in hp:
        raise UserError(f"checkpoint {path} has no dfm hyper-parameters; pass a checkpoint written by `dfm fit` or `dfm chain`")
    record = ckpt.get(CHECKPOINT_KEY)
    if record is None:  # written before checkpoints recorded their class: DtM students carried a `distill` flag
        record = {"class": "Distiller" if hp.get("distill") else "Classifier", "arch": hp["arch"]}
    if record.get("class") not in MODULES:
        raise UserError(f"checkpoint {path} holds an unknown module class {record.get('class')!r}; "
                        f"known: {', '.join(MODULES)}")
    return record


def load_module(path: str | Path) -> ImageModel:
    """The Classifier or Distiller stored in ``path`` (or the model a source file describes), in eval mode; any
    problem is a one-line :class:`UserError`."""
    path = Path(path)
    if is_source(path):
        return _from_source(path)
    ckpt = _load(path)
    cls = MODULES[_record(ckpt, path)["class"]]
    try:
        module = cls(**_hparams(ckpt))
        module.load_state_dict(ckpt["state_dict"])
    except UserError:
        raise
    except Exception as e:
        raise UserError(f"checkpoint {path} could not be loaded ({type(e).__name__}: {str(e).splitlines()[0][:200]}); "
                        "is it a dfm checkpoint?") from None
    return module.eval()
