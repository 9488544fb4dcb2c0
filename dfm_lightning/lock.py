"""One writer per output directory: an advisory ``fcntl.flock`` on ``DIR/.dfm.lock``, released on any exit (the
kernel drops it with the process, so a killed run never leaves a stale lock). Under DDP only the launching process
(global rank 0) takes it."""
import contextlib
import fcntl
import os
import socket
from pathlib import Path

from dfm_lightning.errors import UserError


def _is_rank_zero() -> bool:
    return os.environ.get("LOCAL_RANK", "0") == "0" and os.environ.get("NODE_RANK", "0") == "0"


@contextlib.contextmanager
def exclusive(directory: str | Path):
    """Hold the directory's lock for the ``with`` block, or fail at once with one line naming the holder."""
    if not _is_rank_zero():
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
