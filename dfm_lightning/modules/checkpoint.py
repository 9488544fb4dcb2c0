"""Loading a checkpoint written by ``dfm fit`` or ``dfm chain``: the module class comes from the checkpoint's own
record, the weights through ``torch.load(..., weights_only=True)`` (no pickle is ever executed)."""
from pathlib import Path

import torch

from dfm_lightning.errors import UserError
from dfm_lightning.modules.classifier import CHECKPOINT_KEY, Classifier, ImageModel
from dfm_lightning.modules.distill import Distiller

MODULES = {cls.__name__: cls for cls in (Classifier, Distiller)}


def checkpoint_info(path: str | Path) -> dict:
    """What a checkpoint holds, without building the model: its hyper-parameters (``arch``, ``arch_kwargs``,
    ``in_channels``, ``input_size``, ``num_classes``, ...) plus ``class``, the LightningModule's class name."""
    ckpt = _load(Path(path))
    return {**_hparams(ckpt), "class": _record(ckpt, path)["class"]}


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
    """The Classifier or Distiller stored in ``path``, in eval mode; any problem is a one-line :class:`UserError`."""
    path = Path(path)
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
