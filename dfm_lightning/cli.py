"""The ``dfm`` command. This module imports nothing heavy: ``dfm --help`` answers at once, and a subcommand loads
Lightning (seconds) only when it runs (:mod:`dfm_lightning.commands`).

Every subcommand takes ``--help``, ``--print_config``, ``--debug`` (tracebacks instead of one-line errors; also
``DFM_DEBUG=1``) and stacked ``--config FILE.yaml`` (a bare name such as
``--config quickstart`` or ``configs/quickstart.yaml`` also finds the configs shipped with the package). Mistakes a
user can fix end with one line on stderr (``dfm: error: ...``) and exit code 2, never a traceback.
"""
import errno
import os
import sys
from pathlib import Path

USAGE = """usage: dfm {fit,validate,test,robustness,extract,chain,crosseval,report} [--help] [--config FILE.yaml] ...

  fit         train M0 on origin data (cross-entropy, optionally L2 adversarial training)
  validate    validate a model on the held-out slice of the origin training set (data.val_size > 0)
  test        accuracy on the origin test set
  robustness  accuracy under L2-PGD for a list of eps (the paper's Table 2 protocol)
  extract     DfM: extract a dataset from a checkpoint, starting from substitute images
  chain       M0 -> D1 -> M1 -> ... -> Mn (the whole paper pipeline), resumable
  crosseval   accuracy of every model on every extracted dataset (the paper's Table 4)
  report      the paper's tables (markdown, CSV, LaTeX) and a plot for one or more chains, seeds pooled

Run `dfm SUBCOMMAND --help` for the options of one subcommand. Configs shipped with the package
(`--config NAME`, e.g. quickstart, fit/mnist_lenet, chain/mnist): `dfm configs` lists them."""

LIGHTNING_SUBCOMMANDS = ("fit", "validate", "test", "robustness")
JSONARGPARSE_SUBCOMMANDS = ("chain", "extract", "crosseval", "report")


def packaged_configs() -> Path:
    """The configs installed with the package (pyproject.toml ships ``configs/`` as ``dfm_lightning/configs``),
    or the checkout's ``configs/`` (an editable install)."""
    here = Path(__file__).resolve().parent
    installed = here / "configs"
    return installed if installed.is_dir() else here.parent / "configs"


def resolve_config(value: str) -> str:
    """``--config`` value -> a path: an existing file as given; else a shipped config by name, with or without
    ``.yaml`` and a leading ``configs/`` (so README commands work outside a checkout); else unchanged."""
    if Path(value).exists() or value.lstrip().startswith("{"):
        return value
    name = value.removeprefix("configs/")
    for candidate in (name, f"{name}.yaml"):
        path = packaged_configs() / candidate
        if path.is_file():
            return str(path)
    return value


def resolve_configs(argv: list[str]) -> list[str]:
    out, after_config = [], False
    for arg in argv:
        if after_config:
            arg = resolve_config(arg)
        elif arg.startswith("--config="):
            arg = "--config=" + resolve_config(arg.split("=", 1)[1])
        after_config = arg == "--config"
        out.append(arg)
    return out


def list_configs() -> str:
    root = packaged_configs()
    return "\n".join(str(p.relative_to(root).with_suffix("")) for p in sorted(root.rglob("*.yaml")))


def _one_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return "; ".join(lines)[:600]


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``dfm`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return
    if argv[0] == "configs":
        print(list_configs())
        return
    debug = "--debug" in argv or os.environ.get("DFM_DEBUG", "") not in ("", "0")
    argv = [a for a in argv if a != "--debug"]
    sub = argv[0]
    if sub not in LIGHTNING_SUBCOMMANDS + JSONARGPARSE_SUBCOMMANDS:
        print(f"dfm: error: unknown subcommand {sub!r}; choose one of "
              f"{', '.join(LIGHTNING_SUBCOMMANDS + JSONARGPARSE_SUBCOMMANDS)} (dfm --help)", file=sys.stderr)
        sys.exit(2)
    from jsonargparse import ArgumentError

    from dfm_lightning import signals
    from dfm_lightning.errors import UserError

    signals.install()  # SIGTERM / Ctrl-C: finish the batch or shard, save, exit 128 + signal
    import warnings

    # noise a user can do nothing about: a deprecation inside Lightning, and the predict loop's note that
    # whole-shard batches have no sample indices (extraction needs none)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    warnings.filterwarnings("ignore", message="Couldn't infer the batch indices")
    try:
        from dfm_lightning import commands

        argv = resolve_configs(argv)
        if sub in JSONARGPARSE_SUBCOMMANDS:
            commands.COMMANDS[sub](argv[1:])
        else:
            commands.lightning(argv)
    except (UserError, ArgumentError, OSError) as e:
        if debug:
            raise  # --debug / DFM_DEBUG=1: the whole traceback, for a bug report
        if isinstance(e, UserError):
            print(f"dfm: error: {e}", file=sys.stderr)
        elif isinstance(e, ArgumentError):
            print(f"dfm {sub}: error: {_one_line(e)} (see `dfm {sub} --help`)", file=sys.stderr)
        elif e.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            print(f"dfm: error: no space left writing {e.filename or 'a file'} ({e.strerror}); free space there and "
                  "rerun the same command (finished steps and shards are kept, partial files were removed)",
                  file=sys.stderr)
        else:
            raise
        sys.exit(2)
    except signals.Stopped as e:
        print(f"dfm: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:  # a second Ctrl-C
        print("dfm: interrupted; rerun the same command to continue where it stopped", file=sys.stderr)
        sys.exit(130)
    except SystemExit as e:
        if type(e).__name__ != "SIGTERMException":  # --help, --print_config, LightningCLI's own exits
            raise
        # Lightning's own stop (dfm fit; DDP ranks): it ends the loop at a batch or epoch boundary
        print("dfm: stopped by SIGTERM; rerun the same command to continue", file=sys.stderr)
        sys.exit(143)


if __name__ == "__main__":
    main()
