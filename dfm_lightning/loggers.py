"""W&B logging that never prompts, hangs or crashes: without an API key (or network) it goes offline and says so.
Also the W&B side of a chain: deterministic run ids (a rerun continues its run) and checkpoints and extracted
datasets as artifacts."""
import hashlib
import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from pytorch_lightning.loggers import WandbLogger as _WandbLogger

from dfm_lightning.errors import UserError

_MODES = ("online", "offline", "disabled", "dryrun", "shared", "run")  # what wandb accepts


def check_wandb_env() -> str | None:
    """WANDB_MODE if it is set to a valid mode; None if unset (an empty one is unset); else one line."""
    env = os.environ.get("WANDB_MODE")
    if env == "":
        del os.environ["WANDB_MODE"]  # an empty WANDB_MODE means unset; wandb itself would reject it
        return None
    if env is not None and env not in _MODES:
        raise UserError(f"environment variable WANDB_MODE={env!r} is not one of {', '.join(_MODES)}; "
                        "unset it or set it to one of those")
    return env


def resolve_wandb_mode(mode: str | None = None) -> str:
    """'online' only when asked (or WANDB_MODE allows it), an API key exists and api.wandb.ai answers; else 'offline'."""
    env = check_wandb_env()  # checked even when a mode is given: wandb itself reads WANDB_MODE too
    mode = mode or env or "online"
    if mode in ("offline", "disabled", "dryrun"):
        return "offline" if mode == "dryrun" else mode
    has_key = bool(os.environ.get("WANDB_API_KEY"))
    if not has_key:
        try:
            import netrc

            has_key = netrc.netrc().authenticators("api.wandb.ai") is not None
        except (OSError, netrc.NetrcParseError):
            has_key = False
    if has_key:
        try:
            socket.create_connection(("api.wandb.ai", 443), timeout=3).close()
            return "online"
        except OSError:
            pass
    return "offline"


PROJECT = "dfm_lightning"


@dataclass
class WandbConfig:
    """W&B for a chain (one :class:`WandbLogger` run per generation): ``mode`` online/offline/disabled (None: online
    if possible, else offline); ``enabled`` False = no logger at all; ``entity``, ``tags`` and ``notes`` go to every
    run. ``log_artifacts``: every checkpoint becomes a ``model`` artifact and every extracted dataset a ``dataset``
    artifact; a dataset larger than ``reference_above_mb`` MiB is a reference artifact (its files' paths and
    checksums, nothing uploaded), smaller ones and checkpoints are uploaded."""

    enabled: bool = True
    project: str = PROJECT
    mode: str | None = None
    entity: str | None = None
    tags: list[str] | None = None
    notes: str | None = None
    log_artifacts: bool = True
    reference_above_mb: float = 64.0


def run_id(run_dir: str | Path, step: str) -> str:
    """The W&B run id of one step (e.g. ``gen2``) of one run dir: the same for every rerun, so a rerun continues
    the same W&B run (``resume="allow"``) instead of opening a duplicate."""
    digest = hashlib.sha1(str(Path(run_dir).resolve()).encode()).hexdigest()[:8]
    return f"{re.sub(r'[^A-Za-z0-9_-]', '-', Path(run_dir).name)[:40]}-{step}-{digest}"


def wandb_quiet():
    """wandb settings without its console summary (sparklines and sync hints, ~25 lines per run): a chain opens
    one run per generation and tells the sync command once itself."""
    import wandb

    return wandb.Settings(silent=True)


def make_artifact(name: str, kind: str, files: list[Path], metadata: dict, reference_above_mb: float = 64.0):
    """A W&B artifact of ``files``: uploaded, or (larger than ``reference_above_mb`` MiB in all) by reference."""
    import wandb

    art = wandb.Artifact(re.sub(r"[^A-Za-z0-9_.-]", "-", name), type=kind, metadata=metadata)
    by_reference = sum(f.stat().st_size for f in files) > reference_above_mb * 2**20
    for f in files:
        if by_reference:
            art.add_reference(Path(f).resolve().as_uri(), name=Path(f).name, checksum=True)
        else:
            art.add_file(str(f), name=Path(f).name)
    return art


def log_artifact(run, art, inputs: list[str] = (), aliases: list[str] = ()) -> None:
    """Log ``art`` as an output of ``run``, and ``inputs`` (``name:alias`` of artifacts logged before) as the run's
    inputs, which draws the lineage graph. wandb refuses ``use_artifact`` offline: there the inputs stay in the run's
    config (``inputs``) and in the artifact's metadata (``derived_from``, set when it is made)."""
    if inputs and getattr(run, "offline", True):
        run.config.update({"inputs": list(inputs)}, allow_val_change=True)
    elif inputs:
        for name in inputs:
            try:
                run.use_artifact(name)
            except Exception as e:  # noqa: BLE001 - lineage is a nicety; a failed lookup must not end a chain
                print(f"W&B: could not mark {name} as an input of {run.name} ({type(e).__name__}: {e})", file=sys.stderr)
    run.log_artifact(art, aliases=["latest", *aliases])


_told_offline: set[str] = set()


class WandbLogger(_WandbLogger):
    """Lightning's WandbLogger with the offline fallback (``mode``: online, offline or disabled)."""

    def __init__(self, project: str = PROJECT, name: str | None = None, group: str | None = None,
                 save_dir: str = "runs", mode: str | None = None, **kwargs):
        mode = resolve_wandb_mode(mode)
        asked = os.environ.get("WANDB_MODE") in ("offline", "dryrun")
        if mode == "offline" and not asked and save_dir not in _told_offline:  # say it once per run directory
            _told_offline.add(save_dir)
            print(f"W&B: no API key or no network; logging offline to {save_dir}/wandb "
                  f"(upload later with `wandb sync {save_dir}/wandb/offline-run-*`)", file=sys.stderr)
        os.makedirs(save_dir, exist_ok=True)
        super().__init__(project=project, name=name, group=group, save_dir=save_dir, mode=mode, **kwargs)
