"""Graceful stop. SIGTERM (what SLURM, Kubernetes and ``docker stop`` send) and SIGINT (Ctrl-C) only set a flag;
the running step notices it at its next batch or shard boundary, saves what it has, and raises :class:`Stopped`,
which the CLI turns into one line and exit code 128 + the signal number. A second Ctrl-C stops at once."""
import signal
import threading

_received: int | None = None
_installed = False


class Stopped(Exception):
    """A stop signal arrived; ``where`` says how far the run got (e.g. ``M2 epoch 3/10, batch 120``)."""

    def __init__(self, signum: int, where: str, hint: str = "rerun the same command to continue"):
        super().__init__(where)
        self.signum, self.where, self.hint = signum, where, hint

    @property
    def exit_code(self) -> int:
        return 128 + self.signum

    def __str__(self) -> str:
        return f"stopped by {signal.Signals(self.signum).name} at {self.where}; {self.hint}"


def _handler(signum: int, frame) -> None:
    global _received
    if _received is not None and signum == signal.SIGINT:
        raise KeyboardInterrupt  # the user insists
    _received = signum


def install() -> None:
    """Route SIGTERM and SIGINT to the flag (main thread only)."""
    global _installed
    for s in (signal.SIGTERM, signal.SIGINT):
        signal.signal(s, _handler)
    _installed = True


def reclaim() -> None:
    """Take SIGTERM back from Lightning, which installs its own handler at the start of every run (and restores ours
    after it). Under DDP Lightning's handler broadcasts from inside the signal handler: a collective that can pair
    with another rank's barrier and hang both (observed: a SIGTERM during DDP extraction never ended). Our flag is
    read at batch and shard boundaries, with collectives only where every rank makes them."""
    if _installed and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _handler)


def received() -> int | None:
    """The signal number that asked to stop, or None."""
    return _received


def check(where: str) -> None:
    """Raise :class:`Stopped` if a stop was asked for."""
    if _received is not None:
        raise Stopped(_received, where)
