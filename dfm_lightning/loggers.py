"""W&B logging that never prompts, hangs or crashes: without an API key (or network) it goes offline and says so."""
import os
import socket
import sys
from dataclasses import dataclass

from pytorch_lightning.loggers import WandbLogger as _WandbLogger

from dfm_lightning.errors import UserError

_MODES = ("online", "offline", "disabled", "dryrun", "shared", "run")  # what wandb accepts


def resolve_wandb_mode(mode: str | None = None) -> str:
    """'online' only when asked (or WANDB_MODE allows it), an API key exists and api.wandb.ai answers; else 'offline'."""
    env = os.environ.get("WANDB_MODE")
    if env == "":
        del os.environ["WANDB_MODE"]  # an empty WANDB_MODE means unset; wandb itself would reject it
    elif env is not None and env not in _MODES:
        raise UserError(f"environment variable WANDB_MODE={env!r} is not one of {', '.join(_MODES)}; "
                        "unset it or set it to one of those")
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
    if possible, else offline); ``enabled`` False = no logger at all."""

    enabled: bool = True
    project: str = PROJECT
    mode: str | None = None


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
