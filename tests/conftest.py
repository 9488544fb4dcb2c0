import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("WANDB_MODE", "offline")
os.environ["WANDB_SILENT"] = "true"
REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def mnist_root() -> str | None:
    """The offline dataset folder (DFM_DATA_DIR, else ../shared/datasets) when it holds MNIST."""
    for root in (os.environ.get("DFM_DATA_DIR"), REPO.parent / "shared" / "datasets"):
        if root and (Path(root) / "MNIST" / "raw" / "t10k-images-idx3-ubyte").exists():
            return str(root)
    return None


def run_dfm(*args: str, cwd: Path, timeout: int = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the dfm CLI in a subprocess (what a user types), capturing output."""
    full_env = {**os.environ, "WANDB_MODE": "offline", **(env or {})}
    full_env = {k: v for k, v in full_env.items() if v is not None}  # env={"X": None} removes X
    return subprocess.run([sys.executable, "-m", "dfm_lightning.cli", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=full_env)


def dfm_in_process(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """The dfm CLI run inside this process, for commands that only parse, print or fail (no seconds of start-up):
    its exit code, stdout and stderr as a user sees them (an uncaught exception shows as a traceback)."""
    import contextlib
    import io
    import signal
    import traceback

    from dfm_lightning import signals
    from dfm_lightning.cli import main

    out, err, code = io.StringIO(), io.StringIO(), 0
    handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    here, environ = os.getcwd(), dict(os.environ)
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                main(list(args))
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else 0 if e.code is None else 1
            except BaseException:  # noqa: BLE001 - shown as a user would see it
                traceback.print_exc()
                code = 1
    finally:
        os.chdir(here)
        for s, h in handlers.items():  # main() installs the stop handlers: give pytest its Ctrl-C back
            signal.signal(s, h)
        signals._installed = False
        if "WANDB_SERVICE" in os.environ and "WANDB_SERVICE" not in environ:
            # a W&B run was started here: stop its service, or every later `dfm` subprocess would inherit
            # WANDB_SERVICE and log into this process's service (observed: offline runs without their data)
            import wandb

            wandb.teardown()
        os.environ.clear()
        os.environ.update(environ)
    return subprocess.CompletedProcess(list(args), code, out.getvalue(), err.getvalue())


TINY_CHAIN = [
    "--trainer", "{accelerator: cpu, devices: 1, enable_progress_bar: false, max_epochs: 8}",
    "--generations", "2", "--data.name", "digits", "--data.batch_size", "64", "--model.lr", "0.003",
    "--extraction.substitute", "sample_photos", "--extraction.num_samples", "1500", "--extraction.steps", "20",
    "--extraction.step_size", "0.15", "--extraction.shard_size", "500",
    "--distill_epochs", "6", "--distill.lr", "0.003", "--distill_data.batch_size", "64", "--distill_data.val_size", "200",
    "--robustness.eps", "[0, 1]", "--robustness.steps", "5", "--robustness.num_test_images", "128",
]


@pytest.fixture(scope="session")
def tiny_chain(tmp_path_factory) -> Path:
    """One tiny digits chain, run once through the CLI and shared by the tests that inspect its outputs."""
    cwd = tmp_path_factory.mktemp("chain")
    proc = run_dfm("chain", "--run_dir", "run", *TINY_CHAIN, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return cwd / "run"
