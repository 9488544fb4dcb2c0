"""DfM as ``Trainer.predict``: L2-PGD from substitute images under a DfM method (the paper's virtual logits by
default, :mod:`dfm_lightning.extraction.methods`), written shard by shard.

Each predict "batch" is one whole shard, so a shard is a pure function of (model, config, seed, shard id):
a rerun skips complete shards and reproduces the rest byte for byte, and under DDP Lightning's
distributed sampler hands each rank its own shards, which its writer callback saves.
"""
import errno
import json
import math
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch import nn
from torch.utils.data import DataLoader, Dataset

from dfm_lightning.attacks import l2_pgd
from dfm_lightning.callbacks import SharedDirCheck, StopOnSignal, with_fast_path
from dfm_lightning.data.extracted import (
    ExtractedDataset,
    atomic_write_json,
    complete_shards,
    read_json,
    write_manifest,
    write_shard,
)
from dfm_lightning.data.origin import EverySampleOnce
from dfm_lightning.data.substitute import SubstituteDataset
from dfm_lightning.errors import UserError
from dfm_lightning.extraction.methods import DfMMethod, create_method
from dfm_lightning.extraction.virtual_logits import VirtualLogits, VirtualLogitsMethod
from dfm_lightning.models import freeze, num_classes_of


@dataclass
class ExtractionConfig:
    """How DfM runs. ``eps`` None = unbounded perturbation; ``steps`` normalised-gradient steps of ``step_size``.

    ``snapshot_steps`` (beyond the paper): also store (x_t, Z(x_t)) after these step counts, so every substitute
    image yields 1 + len(snapshot_steps) training samples for the cost of one PGD run (docs/RESULTS.md).
    ``method``: the DfM method by name (``dfm_lightning.extraction.methods``; None = ``virtual_logits``, the paper's,
    configured by ``virtual_logits``).
    """

    substitute: str = "fashion_mnist"
    num_samples: int = 50000
    steps: int = 40
    step_size: float = 0.1
    eps: float | None = None
    snapshot_steps: list[int] | None = None
    shard_size: int = 1000
    num_workers: int = 0
    virtual_logits: VirtualLogits = field(default_factory=VirtualLogits)
    method: str | None = None

    def __post_init__(self) -> None:  # checked when the config is built, before any work
        if self.num_samples <= 0 or self.shard_size <= 0 or self.steps < 0 or self.step_size < 0:
            raise UserError("extraction needs num_samples, shard_size > 0 and steps, step_size >= 0; got "
                            f"num_samples={self.num_samples}, shard_size={self.shard_size}, steps={self.steps}, "
                            f"step_size={self.step_size}")
        if self.steps > 0 and self.step_size == 0:
            raise UserError(f"extraction step_size 0 with steps={self.steps} spends the PGD budget on a no-op; "
                            "set step_size > 0, or steps 0 to store the substitutes with the model's logits")
        if any(not 0 <= k < self.steps for k in self.snapshot_steps or []):
            raise UserError(f"extraction snapshot_steps must lie in [0, steps={self.steps}), got {self.snapshot_steps}")
        if self.eps is not None and self.eps < 0:
            raise UserError(f"extraction eps must be >= 0 or null (unbounded), got {self.eps}")
        if self.method is not None and not method_of(self).optimises and self.snapshot_steps:  # (checks the name too)
            raise UserError(f"extraction method {self.method!r} does not optimise, so it has no snapshot_steps to store")


def shard_metrics(method: DfMMethod, x_s: torch.Tensor, x: torch.Tensor, z: torch.Tensor,
                  targets: torch.Tensor) -> dict[str, float]:
    """How DfM did on one shard's final iterates: mean ||x' - x_s||_2, plus the method's own measures (the paper's:
    mean ||Z(x') - Z_v||_2 and the share of x' in the virtual top class)."""
    out = {"delta_l2": float((x - x_s).flatten(1).norm(dim=1).mean()), **method.metrics(z, targets)}
    return {k: round(v, 6) for k, v in out.items()}


def method_of(config: "ExtractionConfig") -> DfMMethod:
    """The config's DfM method (None: the paper's, with its ``virtual_logits`` settings)."""
    if config.method in (None, "virtual_logits"):
        return VirtualLogitsMethod(config.virtual_logits)
    return create_method(config.method)


IDLE = -1  # the item of a rank with no shard left (fewer pending shards than processes): nothing to compute


class ShardSource(Dataset):
    """Item k = shard ``pending[k]``: its sample indices and the method's targets for them (the substitute images
    are made on the device, by :class:`Extractor`)."""

    def __init__(self, substitute: SubstituteDataset, method: DfMMethod, num_classes: int, shard_size: int,
                 pending: list[int], seed: int):
        self.substitute, self.method, self.num_classes = substitute, method, num_classes
        self.shard_size, self.pending, self.seed = shard_size, pending, seed

    def __len__(self) -> int:
        return len(self.pending)

    def __getitem__(self, k: int) -> dict:
        if k == IDLE:
            return {"shard": IDLE}
        shard = self.pending[k]
        idx = range(shard * self.shard_size, min((shard + 1) * self.shard_size, len(self.substitute)))
        return {"shard": shard, "indices": list(idx),  # plain ints: no copy to the device and back
                "targets": self.method.targets(idx, self.seed, self.num_classes)}


class Extractor(pl.LightningModule):
    """Wraps the frozen source model; ``predict_step`` makes one shard's substitutes x_s on the model's device
    (the pool kept there, crops as batched tensor ops) and turns them into (x', Z(x')).

    With snapshot steps a shard holds its final iterates first, then one block per snapshot step (ascending).
    """

    def __init__(self, model: nn.Module, substitute: SubstituteDataset, steps: int, step_size: float,
                 eps: float | None, snapshot_steps: list[int] | None = None, method: DfMMethod | None = None):
        super().__init__()
        self.model, self.substitute, self.method = freeze(model), substitute, method or VirtualLogitsMethod()
        self.steps, self.step_size = steps, step_size
        self.eps = math.inf if eps is None else eps
        self.snapshot_steps = sorted(set(snapshot_steps or []))

    def predict_step(self, batch: dict, batch_idx: int) -> dict | None:
        if batch["shard"] == IDLE:
            return None
        x_s, iterates, done = self.substitute.images(batch["indices"], device=self.device), [], 0
        steps = self.steps if self.method.optimises else 0
        net, target, loss = self.method.objective(self.model, x_s, batch["targets"]) if steps else (None, None, None)
        with torch.enable_grad():
            for k in [*[s for s in self.snapshot_steps if s < steps], steps]:
                start = iterates[-1] if iterates else None
                iterates.append(l2_pgd(net, x_s, target, loss, eps=self.eps, steps=k - done,
                                       step_size=self.step_size, maximize=False, start=start))
                done = k
        x = torch.cat([iterates[-1], *iterates[:-1]])
        with torch.no_grad():
            z = self.model(x).float()
        return {"shard": int(batch["shard"]), "images": x.float(), "logits": z,
                "metrics": shard_metrics(self.method, x_s, x[:len(x_s)], z[:len(x_s)], batch["targets"])}


class ShardWriter(BasePredictionWriter):
    """Writes every predicted shard on the rank that computed it."""

    def __init__(self, out_dir: str | Path, num_shards: int):
        super().__init__(write_interval="batch")
        self.out_dir, self.num_shards = Path(out_dir), num_shards

    def on_predict_start(self, trainer, pl_module) -> None:
        self._start = self._last = time.time()
        self._todo = sum(trainer.num_predict_batches)  # this process's shards (each a batch)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx=0):
        if prediction is None:  # an idle rank
            return
        images, logits = prediction["images"].cpu().numpy(), prediction["logits"].cpu().numpy()
        now = time.time()
        metrics = {**prediction["metrics"], "seconds": round(now - self._last, 3)}  # this shard, on this rank
        self._last = now
        try:
            write_shard(self.out_dir, prediction["shard"], images, logits, metrics)
        except OSError as e:  # numpy reports a short write with no errno
            if e.errno not in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT, None):
                raise
            left = self.num_shards - len(complete_shards(self.out_dir))
            need, free = left * (images.nbytes + logits.nbytes), shutil.disk_usage(self.out_dir).free
            raise UserError(f"no space left writing {self.out_dir} ({e.strerror or e}): the {left} shards still to write "
                            f"need about {need / 2**20:.0f} MiB, {free / 2**20:.0f} MiB are free there; free space and "
                            "rerun the same command (complete shards are kept, the partial one was removed)") from None
        if trainer.is_global_zero:  # progress from rank 0's share (every rank works at about the same pace)
            done, elapsed = batch_idx + 1, now - self._start
            eta = f", ETA {_duration(elapsed / done * (self._todo - done))}" if self._todo else ""
            print(f"[extract] {self.out_dir}: shard {prediction['shard'] + 1}/{self.num_shards} "
                  f"({done}/{self._todo or '?'} of this process's), {len(images) / metrics['seconds']:.0f} images/s"
                  + "".join(f", {k} {v:.2f}" for k, v in metrics.items() if k not in ("seconds", "delta_l2"))
                  + eta, flush=True)


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _settings(meta: dict) -> dict:
    """An extraction's record with None-valued options dropped, so datasets made before an option existed match."""
    return {**meta, "config": {k: v for k, v in meta["config"].items() if v is not None}}


def extract(model: nn.Module, out_dir: str | Path, config: ExtractionConfig, seed: int = 0,
            source_sha256: str | None = None, root: str | None = None, trainer_kwargs: dict | None = None,
            input_shape: tuple[int, int] | None = None) -> ExtractedDataset:
    """Run DfM from ``model`` into ``out_dir`` (resumable) and return the verified dataset.

    ``input_shape`` = (channels, size) of the model's inputs. A directory holding an extraction with a
    different config or source is refused rather than overwritten.
    """
    method = method_of(config)
    method.check(model)  # before anything is written: a rerun with another method must not find this one's config
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    described = {k: v for k, v in asdict(config).items() if k != "num_workers"}
    meta = {"config": described, "seed": seed,
            "source_checkpoint_sha256": source_sha256}
    cfg_file = out_dir / "config.json"
    if cfg_file.exists():
        old = read_json(cfg_file, {"config": dict}, "this extraction (delete the whole directory)")
        if _settings(old) != _settings(json.loads(json.dumps(meta))):
            raise UserError(f"{out_dir} holds an extraction with another config or source model; "
                            "choose a new output directory (nothing was overwritten)")
    else:
        atomic_write_json(cfg_file, meta)
    if (out_dir / "manifest.json").exists():
        return ExtractedDataset(out_dir)

    channels, size = input_shape
    num_classes = num_classes_of(model)
    substitute = SubstituteDataset(config.substitute, config.num_samples, channels, size, seed=seed, root=root)
    num_shards = math.ceil(config.num_samples / config.shard_size)
    pending = sorted(set(range(num_shards)) - complete_shards(out_dir))
    if pending:
        source = ShardSource(substitute, method, num_classes, config.shard_size, pending, seed)
        # under DDP rank r computes pending shards r, r + W, ... (none when fewer shards than ranks are left)
        loader = DataLoader(source, batch_size=None, sampler=EverySampleOnce(source, idle=IDLE), num_workers=config.num_workers)
        kwargs = {"logger": False, "enable_checkpointing": False, "enable_model_summary": False, **(trainer_kwargs or {})}
        # the stop check runs after the writer, so a stop never loses a computed shard
        callbacks = with_fast_path([*(kwargs.pop("callbacks", None) or []), SharedDirCheck(out_dir, "--out_dir"),
                                    ShardWriter(out_dir, num_shards), StopOnSignal("shard")])
        trainer = pl.Trainer(inference_mode=False, callbacks=callbacks, **kwargs)
        start = time.time()
        extractor = Extractor(model, substitute, config.steps, config.step_size, config.eps, config.snapshot_steps,
                              method)
        trainer.predict(extractor, loader, return_predictions=False)
        trainer.strategy.barrier()
        meta["extract_seconds"] = time.time() - start
        if trainer.is_global_zero:
            write_manifest(out_dir, num_shards, meta)
        trainer.strategy.barrier()
    else:
        write_manifest(out_dir, num_shards, meta)
    return ExtractedDataset(out_dir)
