"""One writer per output directory: an advisory ``fcntl.flock`` on ``DIR/.dfm.lock``, released on any exit (the
kernel drops it with the process, so a killed run never leaves a stale lock). Under DDP only global rank 0 takes it,
whichever launcher started the processes."""
import contextlib
import fcntl
import os
import socket
from pathlib import Path

from dfm_lightning.errors import UserError


# what each launcher sets: Lightning's own (LOCAL_RANK, NODE_RANK), torchrun (RANK, GROUP_RANK), srun (SLURM_PROCID)
RANK_VARIABLES = ("RANK", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "SLURM_PROCID")


def is_rank_zero() -> bool:
    """Whether this process is global rank 0, from the launcher's variables (before any process group exists)."""
    return all(os.environ.get(k, "0") == "0" for k in RANK_VARIABLES)


@contextlib.contextmanager
def exclusive(directory: str | Path):
    """Hold the directory's lock for the ``with`` block, or fail at once with one line naming the holder."""
    if not is_rank_zero():
        yield
        return
    path = Path(directory) / ".dfm.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise UserError(f"{directory} is being written by {holder}; wait for it to finish or stop it "
                            "(one process per run directory)") from None
        f.seek(0)
        f.truncate()
        f.write(f"dfm (pid {os.getpid()} on host {socket.gethostname()})\n")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
