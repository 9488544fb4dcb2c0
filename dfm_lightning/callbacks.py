"""Lightning callbacks that make every step stoppable and every training run resumable to the batch.

:class:`ResumeCheckpoint` writes ``last.ckpt`` atomically (model, optimiser, loops, the epoch's shuffle seed and the
RNG states) every ``every_s`` seconds and before a stop (never at an epoch's last batch), and restores the exact data position
on resume, so an interrupted fit continues with the next batch and ends with the same weights as an uninterrupted
one (single process; under DDP Lightning's distributed sampler restarts the epoch's order instead).
:class:`StopOnSignal` ends a predict or test run at the next batch when a stop was asked for.
:class:`SharedDirCheck` refuses an output directory that not every process sees (several nodes, no shared filesystem).
:class:`FastPath` puts the module's network on the GPU fast path while a Trainer runs (every Trainer here has one).
"""
import os
import random
import signal
import socket
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Checkpoint
from torch import nn

from dfm_lightning import signals
from dfm_lightning.data.origin import ResumableRandomSampler
from dfm_lightning.errors import UserError
from dfm_lightning.models.fast import accelerate, restore


def _rng_state() -> dict:
    return {"torch": torch.get_rng_state(), "numpy": np.random.get_state()[1].tolist(),
            "numpy_pos": int(np.random.get_state()[2]), "python": list(random.getstate()[1])}


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(("MT19937", np.array(state["numpy"], dtype=np.uint32), state["numpy_pos"], 0, 0.0))
    random.setstate((3, tuple(state["python"]), None))


def _where(trainer: pl.Trainer, batch_idx: int) -> str:
    return f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}, batch {batch_idx + 1}"


class OwnStopSignal(pl.Callback):
    """Keeps SIGTERM with :mod:`dfm_lightning.signals` during a run (see :func:`signals.reclaim`)."""

    def on_train_start(self, trainer, pl_module) -> None:
        signals.reclaim()

    def on_validation_start(self, trainer, pl_module) -> None:
        signals.reclaim()

    def on_test_start(self, trainer, pl_module) -> None:
        signals.reclaim()

    def on_predict_start(self, trainer, pl_module) -> None:
        signals.reclaim()


class ResumeCheckpoint(OwnStopSignal, Checkpoint):
    """Keeps ``path`` a checkpoint the training can continue from exactly (see the module docstring)."""

    def __init__(self, path: str | Path, every_s: float = 60.0, hint: str = "rerun the same command to continue"):
        self.path, self.every_s, self.hint = Path(path), every_s, hint
        self._last_save, self._pending = time.monotonic(), None

    def _sampler(self, trainer: pl.Trainer) -> ResumableRandomSampler | None:
        sampler = getattr(trainer.train_dataloader, "sampler", None)
        return sampler if isinstance(sampler, ResumableRandomSampler) else None

    def state_dict(self) -> dict:
        return {"rng": _rng_state(), "sampler_seed": self._seed}

    def load_state_dict(self, state: dict) -> None:
        self._pending = state

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        if self._pending is None:
            return
        sampler = self._sampler(trainer)
        done = trainer.fit_loop.epoch_loop.batch_progress.current.ready  # batches of this epoch already trained
        if sampler is not None and self._pending.get("sampler_seed") is not None and done > 0:
            sampler.resume(self._pending["sampler_seed"], skip=done * trainer.train_dataloader.batch_size)
        _set_rng_state(self._pending["rng"])
        self._pending = None

    def save(self, trainer: pl.Trainer) -> None:
        sampler = self._sampler(trainer)
        self._seed = sampler.seed if sampler is not None else None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp{os.getpid()}")
        try:
            trainer.save_checkpoint(tmp, weights_only=False)  # the whole state, to resume from
            if trainer.is_global_zero:
                os.replace(tmp, self.path)
        finally:
            if trainer.is_global_zero and tmp.exists():
                tmp.unlink()
        self._last_save = time.monotonic()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if batch_idx + 1 >= trainer.num_training_batches:
            # not at an epoch's last batch: Lightning 2.6 resumes such a checkpoint one epoch too far on. A stop
            # asked for now is taken after the next epoch's first batch (or, after the last epoch, by the caller).
            return
        stop, due = signals.received(), time.monotonic() - self._last_save > self.every_s
        if trainer.world_size > 1:  # saving is collective: every rank must decide alike (as EarlyStopping does)
            due = trainer.strategy.reduce_boolean_decision(due, all=False)
            if trainer.strategy.reduce_boolean_decision(stop is not None, all=False):
                stop = stop or signal.SIGTERM
        if stop is not None or due:
            self.save(trainer)
        if stop is not None:
            raise signals.Stopped(stop, _where(trainer, batch_idx), self.hint)

    _seed = None


class StopOnSignal(OwnStopSignal):
    """Ends predict (extraction: after the shard's writer) and test runs at the next batch when a stop was asked for."""

    def __init__(self, what: str = "batch"):
        self.what = what

    def _check(self, trainer: pl.Trainer, batch_idx: int) -> None:
        # each rank looks at its own flag (no collective: under DDP ranks may hold different numbers of batches)
        stop = signals.received()
        if stop is not None:
            raise signals.Stopped(stop, f"{self.what} {batch_idx + 1}")

    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._check(trainer, batch_idx)

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._check(trainer, batch_idx)


class SharedDirCheck(pl.Callback):
    """At setup, before any work: rank 0 writes a random token into ``directory`` and every rank reads it back.

    Every process writes its outputs (shards, checkpoints) there and rank 0 collects them, so on several nodes the
    directory must be one shared filesystem; without one a run would fail late, or silently lose the other nodes'
    shards. One check per directory and process (the process group outlives a Trainer)."""

    _checked: set = set()

    def __init__(self, directory: str | Path, option: str = "--run_dir"):
        self.directory, self.option = Path(directory), option

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        key = str(self.directory.resolve())
        if trainer.world_size == 1 or key in self._checked:
            return
        token = trainer.strategy.broadcast(uuid.uuid4().hex if trainer.is_global_zero else None)
        probe = self.directory / ".dfm-shared-check"
        if trainer.is_global_zero:
            self.directory.mkdir(parents=True, exist_ok=True)
            probe.write_text(token)
        trainer.strategy.barrier()
        try:
            seen = probe.read_text() == token
        except OSError:
            seen = False
        if not trainer.strategy.reduce_boolean_decision(seen, all=True):  # every rank decides alike: no hang
            where = "" if seen else f" (rank {trainer.global_rank} on host {socket.gethostname()} does not see a " \
                                    "file rank 0 wrote there)"
            raise UserError(f"{self.option} {self.directory} is not one directory for all {trainer.world_size} "
                            f"processes{where}: {self.option.lstrip('-')} must be on a filesystem shared by all nodes "
                            "(not a node's local disk); pass a path on the cluster's shared storage")
        self._checked.add(key)


class FastPath(pl.Callback):
    """bf16 autocast, channels_last and ``torch.compile`` (:func:`dfm_lightning.models.fast.accelerate`) for the
    module's network (its ``model``) from setup to teardown: M0 training, DtM and every PGD use it.

    ``enabled`` None: on when the Trainer runs on CUDA (off on the CPU, where bf16 is emulated on most processors and
    compiling costs more than it saves, docs/RESULTS.md). Every Trainer this package builds gets ``FastPath()``
    unless its callbacks already hold one; to change it pass your own, e.g. ``--trainer.callbacks+=FastPath
    --trainer.callbacks.enabled false`` (or ``--trainer.callbacks.compile false``)."""

    def __init__(self, enabled: bool | None = None, bf16: bool = True, channels_last: bool = True, compile: bool = True):
        self.enabled, self.bf16, self.channels_last, self.compile = enabled, bf16, channels_last, compile

    def active(self, trainer: pl.Trainer) -> bool:
        return self.enabled if self.enabled is not None else trainer.strategy.root_device.type == "cuda"

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        net = getattr(pl_module, "model", None)
        if isinstance(net, nn.Module) and self.active(trainer):
            log = (lambda s: print(s, file=sys.stderr)) if trainer.is_global_zero else (lambda s: None)
            accelerate(net, trainer.strategy.root_device, self.bf16, self.channels_last, self.compile, log)

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        net = getattr(pl_module, "model", None)
        if isinstance(net, nn.Module):
            restore(net)


def with_fast_path(callbacks: list | None) -> list:
    """``callbacks`` plus the default :class:`FastPath` unless they hold one."""
    callbacks = list(callbacks or [])
    return callbacks if any(isinstance(c, FastPath) for c in callbacks) else [*callbacks, FastPath()]


def load_resumable(path: Path) -> str | None:
    """``path`` if it holds a loadable checkpoint; a broken one (e.g. truncated by a full disk) is set aside with
    a warning and the step starts over."""
    if not path.exists():
        return None
    try:
        torch.load(path, map_location="cpu", weights_only=True)
        return str(path)
    except Exception as e:
        aside = path.with_name(f"{path.name}.broken-{int(time.time())}")
        os.replace(path, aside)
        print(f"dfm: warning: {path} could not be read ({type(e).__name__}); moved to {aside.name}, "
              "this step starts over", file=sys.stderr)
        return None
