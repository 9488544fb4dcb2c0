"""Stopping and resuming: a stop signal ends a step at a batch boundary with a resumable checkpoint, and the
resumed run ends with exactly the weights of an uninterrupted one."""
import json
import signal
import subprocess
import sys
import time

import pytest
import pytorch_lightning as pl
import torch
from conftest import TINY_CHAIN

from dfm_lightning import signals
from dfm_lightning.callbacks import ResumeCheckpoint
from dfm_lightning.data import OriginDataModule
from dfm_lightning.modules import Classifier

CPU = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False)


class SignalAt(pl.Callback):
    """Plays the operating system: 'sends' SIGTERM after the given optimiser step (before ResumeCheckpoint looks)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step:
            signals._received = signal.SIGTERM


class Seen(pl.Callback):
    def __init__(self):
        self.first = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        if self.first is None:
            self.first = (trainer.current_epoch, batch_idx, trainer.global_step)


def _fit(tmp_path, *callbacks, ckpt_path=None) -> Classifier:
    pl.seed_everything(0, verbose=False)
    model = Classifier("lenet", lr=3e-3)
    dm = OriginDataModule("digits", batch_size=64, augment=True)  # augmentation draws from the global RNG
    trainer = pl.Trainer(max_epochs=3, callbacks=[*callbacks, ResumeCheckpoint(tmp_path / "last.ckpt", every_s=1e9)],
                         **CPU)
    trainer.fit(model, datamodule=dm, ckpt_path=ckpt_path)
    return model


@pytest.mark.parametrize("step", [5, 23, 40])  # 23 batches per epoch: 23 is an epoch's last batch
def test_stop_mid_epoch_then_resume_gives_the_uninterrupted_weights(tmp_path, step):
    reference = _fit(tmp_path / "ref")
    with pytest.raises(signals.Stopped) as stopped:
        _fit(tmp_path / "run", SignalAt(step))
    signals._received = None
    assert stopped.value.exit_code == 143 and "epoch" in stopped.value.where
    assert (tmp_path / "run" / "last.ckpt").exists()
    seen = Seen()
    resumed = _fit(tmp_path / "run", seen, ckpt_path=str(tmp_path / "run" / "last.ckpt"))
    saved = step + 1 if step % 23 == 0 else step  # a stop at an epoch's last batch is taken one batch later
    assert seen.first[2] == saved  # continues with the next optimiser step: no batch lost, none repeated
    assert seen.first[:2] == divmod(saved, 23)
    for (name, a), b in zip(reference.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name


def _shards(run) -> dict:
    import hashlib

    return {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.rglob("shard-*.npy"))}


def test_sigterm_stops_a_chain_with_143_and_the_rerun_matches_an_uninterrupted_chain(tiny_chain, tmp_path):
    import os

    cmd = [sys.executable, "-m", "dfm_lightning.cli", "chain", "--run_dir", "run", *TINY_CHAIN, "--checkpoint_every_s", "0.5"]
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 240
    while not (tmp_path / "run" / "gen0" / "checkpoints" / "last.ckpt").exists() and time.time() < deadline:
        time.sleep(0.2)  # M0 is training once its first resumable checkpoint appears
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == 143, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("dfm: stopped by SIGTERM at generation 0 (M0 epoch ") and "rerun the same command" in last
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "gen0" / "model.ckpt").exists()
    rerun = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    ours = json.loads((tmp_path / "run" / "results.json").read_text())["generations"]
    reference = json.loads((tiny_chain / "results.json").read_text())["generations"]
    for a, b in zip(ours, reference):
        assert (a["test_accuracy"], a["robust_accuracy"]) == (b["test_accuracy"], b["robust_accuracy"])
    assert _shards(tmp_path / "run") == _shards(tiny_chain)  # D1 and D2 byte-identical
