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


# -- bad input: one line, exit 2, nothing already written changed --------------------------------------------------
def _snapshot(root) -> dict:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
            and "wandb" not in p.parts and p.name != ".dfm.lock"}


def _copy(tiny_chain, tmp_path):
    import shutil

    from dfm_lightning.data.extracted import atomic_write_json

    run = tmp_path / "run"
    shutil.copytree(tiny_chain, run, ignore=shutil.ignore_patterns("wandb"))
    config = json.loads((run / "chain_config.json").read_text())
    atomic_write_json(run / "chain_config.json", {**config, "run_dir": str(run)})  # as if it had been run there
    return run


def _one_line(proc, *needles):
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("dfm")]
    assert len(lines) == 1 and all(n in lines[0] for n in needles), proc.stderr[-2000:]


@pytest.mark.parametrize("damage", ["chain_config.json", "gen1/eval.json", "gen2/data/manifest.json"])
def test_garbled_bookkeeping_file_is_one_line_naming_it(tiny_chain, tmp_path, damage):
    from conftest import dfm_in_process

    run = _copy(tiny_chain, tmp_path)
    if damage.startswith("gen2/data"):  # a finished generation never rereads its data: make D2 needed again
        (run / "gen2" / "eval.json").unlink()
        (run / "gen2" / "model.ckpt").unlink()
    (run / damage).write_text('{"truncated": ')
    before = _snapshot(run)
    proc = dfm_in_process("chain", "--run_dir", str(run), *TINY_CHAIN, cwd=tmp_path)
    _one_line(proc, str(run / damage), "delete it")
    assert _snapshot(run) == before


def test_manifest_cannot_point_outside_its_directory(tiny_chain, tmp_path):
    from dfm_lightning.data import ExtractedDataset
    from dfm_lightning.errors import UserError

    run = _copy(tiny_chain, tmp_path)
    manifest = run / "gen1" / "data" / "manifest.json"
    for name in ("../../x.npy", str(run / "gen2" / "data" / "shard-00000.images.npy"), "shard-00000.json"):
        m = json.loads(manifest.read_text())
        m["shards"][0]["images"]["file"] = name
        manifest.write_text(json.dumps(m))
        with pytest.raises(UserError, match="not a shard of this directory"):
            ExtractedDataset(run / "gen1" / "data")


def test_pickled_files_are_refused_in_one_line(tiny_chain, tmp_path):
    import pickle

    import numpy as np
    from conftest import CONFIGS, dfm_in_process

    from dfm_lightning.data import ExtractedDataset
    from dfm_lightning.data.extracted import sha256_file
    from dfm_lightning.errors import UserError

    # a shard replaced by a pickled object array, its manifest entry made consistent: still never unpickled
    run = _copy(tiny_chain, tmp_path)
    data = run / "gen1" / "data"
    np.save(data / "shard-00000.images.npy", np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    m = json.loads((data / "manifest.json").read_text())
    f = data / "shard-00000.images.npy"
    m["shards"][0]["images"].update(bytes=f.stat().st_size, sha256=sha256_file(f))
    (data / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(UserError, match="not a plain array"):
        ExtractedDataset(data)
    # a pickled checkpoint and a pickled substitute array, through the CLI
    (tmp_path / "evil.ckpt").write_bytes(pickle.dumps({"state_dict": object()}))
    proc = dfm_in_process("robustness", "--config", str(CONFIGS / "fit" / "digits_lenet.yaml"), "--ckpt_path",
                          "evil.ckpt", cwd=tmp_path)
    _one_line(proc, "evil.ckpt", "weights_only")
    np.save(tmp_path / "evil.npy", np.array([object()], dtype=object), allow_pickle=True)
    proc = dfm_in_process("extract", "--ckpt_path", str(run / "gen0" / "model.ckpt"), "--out_dir", "d",
                          "--extraction.substitute", str(tmp_path / "evil.npy"), cwd=tmp_path)
    _one_line(proc, "evil.npy", "not a plain image array")


def test_out_of_disk_is_one_line_and_leaves_no_temporary_file(tiny_chain, tmp_path):
    import os
    import resource

    def small_files():  # every file the process writes is capped at 64 KiB: the first shard does not fit
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, 64 * 1024))

    cmd = [sys.executable, "-m", "dfm_lightning.cli", "extract", "--ckpt_path", str(tiny_chain / "gen0" / "model.ckpt"),
           "--out_dir", "d", "--extraction.substitute", "noise", "--extraction.num_samples", "100",
           "--extraction.shard_size", "50", "--extraction.steps", "2", "--trainer.enable_progress_bar", "false"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, preexec_fn=small_files,
                          env={**os.environ, "WANDB_MODE": "offline"}, timeout=300)
    _one_line(proc, "no space left", "MiB")
    assert not [p for p in (tmp_path / "d").iterdir() if ".tmp" in p.name]


def test_second_writer_is_refused_with_the_holders_pid(tmp_path):
    import os

    from dfm_lightning import lock
    from dfm_lightning.errors import UserError

    with lock.exclusive(tmp_path):
        with pytest.raises(UserError, match=f"pid {os.getpid()}"):
            with lock.exclusive(tmp_path):
                pass
    with lock.exclusive(tmp_path):  # released on exit
        pass


@pytest.mark.parametrize("bad,needle", [
    (["--robustness.steps", "0"], "clean accuracy as robust"),
    (["--robustness.eps", "[0, -1]"], "eps must be >= 0"),
    (["--robustness.num_test_images", "0"], "num_test_images must be >= 1"),
    (["--extraction.step_size", "0"], "no-op"),
    (["--extraction.steps", "-1"], "steps"),
    (["--model.adv_eps", "1", "--model.adv_steps", "0"], "clean images"),
    (["--extraction.substitute", "/nowhere/x.npy"], "does not exist"),
    (["--data.name", "cifar10", "--data.download", "false", "--data.root", "/nowhere"], "not found"),
])
def test_meaningless_or_missing_settings_are_refused_before_any_work(tmp_path, bad, needle):
    from dfm_lightning.commands import build_chain
    from dfm_lightning.errors import UserError

    with pytest.raises(UserError, match=needle):
        build_chain(["--config", "configs/quickstart.yaml", "--run_dir", str(tmp_path / "r"), *bad])
    assert not (tmp_path / "r").exists()


def test_handed_over_m0_must_match_the_data(tiny_chain, tmp_path):
    from dfm_lightning.commands import build_chain
    from dfm_lightning.errors import UserError

    with pytest.raises(UserError, match="takes inputs/classes"):
        build_chain(["--config", "configs/quickstart.yaml", "--run_dir", str(tmp_path / "r"), "--data.name", "cifar10",
                     "--m0_ckpt_path", str(tiny_chain / "gen0" / "model.ckpt")])


def test_a_setting_whose_step_never_ran_may_be_corrected(tmp_path):
    from dfm_lightning.commands import build_chain
    from dfm_lightning.errors import UserError

    args = ["--config", "configs/quickstart.yaml", "--run_dir", str(tmp_path)]
    build_chain(args)._check_config()
    (tmp_path / "gen0").mkdir()
    (tmp_path / "gen0" / "model.ckpt").write_bytes(b"M0 trained")
    build_chain([*args, "--extraction.steps", "30"])._check_config()  # D1 does not exist yet: accepted
    assert json.loads((tmp_path / "chain_config.json").read_text())["extraction"]["steps"] == 30
    with pytest.raises(UserError, match=r"\(model\) whose steps already ran"):
        build_chain([*args, "--extraction.steps", "30", "--model.lr", "0.1"])._check_config()


def test_truncated_resume_checkpoint_is_set_aside(tmp_path, capsys):
    from dfm_lightning.callbacks import load_resumable

    (tmp_path / "last.ckpt").write_bytes(b"PK\x03\x04 truncated")
    assert load_resumable(tmp_path / "last.ckpt") is None
    assert not (tmp_path / "last.ckpt").exists() and next(tmp_path.glob("last.ckpt.broken-*"))
    assert "starts over" in capsys.readouterr().err


def test_sigterm_stops_extraction_after_a_whole_shard_and_the_rerun_completes_it(tiny_chain, tmp_path):
    import os

    cmd = [sys.executable, "-m", "dfm_lightning.cli", "extract", "--ckpt_path", str(tiny_chain / "gen0" / "model.ckpt"),
           "--extraction.substitute", "noise", "--extraction.num_samples", "2000", "--extraction.shard_size", "100",
           "--extraction.steps", "10", "--trainer.enable_progress_bar", "false"]
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.Popen([*cmd, "--out_dir", "d"], cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True, env=env)
    deadline = time.time() + 240
    while not list((tmp_path / "d").glob("shard-*.json")) and time.time() < deadline:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=240)[1]
    assert proc.returncode == 143, err[-2000:]
    assert "stopped by SIGTERM at shard" in err.strip().splitlines()[-1]
    done = len(list((tmp_path / "d").glob("shard-*.json")))
    assert 1 <= done < 20 and not (tmp_path / "d" / "manifest.json").exists()
    assert not [p for p in (tmp_path / "d").iterdir() if ".tmp" in p.name]
    for out in ("d", "ref"):  # finish the stopped one; run a reference uninterrupted
        assert subprocess.run([*cmd, "--out_dir", out], cwd=tmp_path, capture_output=True, env=env).returncode == 0
    assert _shards(tmp_path / "d") == _shards(tmp_path / "ref")  # byte-identical to an uninterrupted extraction


@pytest.mark.slow
def test_twenty_sigkills_at_random_moments_change_nothing(tmp_path):
    """bench/kill_trials.py: SIGKILL a small chain 20 times at random moments (seeded), rerunning after each;
    every finished run dir must equal an uninterrupted run's (shards, sample counts, results, loadable checkpoints)."""
    from conftest import REPO

    proc = subprocess.run([sys.executable, str(REPO / "bench" / "kill_trials.py"), "--kills", "20", "--seed", "1",
                           "--out", str(tmp_path / "kt")], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["kills"] >= 20 and summary["identical"] == summary["trials"] >= 1


def test_sigterm_stops_dfm_fit_with_a_checkpoint_to_continue_from(tmp_path):
    import os

    from conftest import CONFIGS

    cmd = [sys.executable, "-m", "dfm_lightning.cli", "fit", "--config", str(CONFIGS / "fit" / "digits_lenet.yaml"),
           "--trainer.max_epochs", "60", "--trainer.enable_progress_bar", "false", "--trainer.logger", "false",
           "--trainer.default_root_dir", "out"]
    env = {**os.environ, "WANDB_MODE": "offline"}
    proc = subprocess.Popen(cmd, cwd=tmp_path, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    deadline = time.time() + 240
    while not list(tmp_path.rglob("epoch=*.ckpt")) and time.time() < deadline:
        time.sleep(0.2)  # training is under way once Lightning wrote its first epoch checkpoint
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=240)[1]
    assert proc.returncode == 143, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("dfm: stopped by SIGTERM at epoch ") and "--ckpt_path out/last.ckpt" in last, last
    resumed = subprocess.run([*cmd, "--trainer.max_epochs", "3", "--ckpt_path", "out/last.ckpt"], cwd=tmp_path,
                             capture_output=True, text=True, env=env, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
