"""The ``dfm`` command: LightningCLI for ``fit validate test robustness``; jsonargparse for ``extract chain crosseval``.

Every subcommand takes ``--help``, ``--print_config`` and ``--config FILE.yaml``. Mistakes a user can fix
end with one line on stderr (``dfm: error: ...``) and exit code 2, never a traceback.
"""
import sys
from pathlib import Path

import pytorch_lightning as pl
from jsonargparse import ActionConfigFile, ArgumentParser, lazy_instance
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.utilities import rank_zero_only

from dfm_lightning.chain import ChainRunner
from dfm_lightning.data.origin import DATASET_SPECS, OriginDataModule
from dfm_lightning.errors import UserError
from dfm_lightning.evaluation.robustness import evaluate_robustness, format_table
from dfm_lightning.extraction.extractor import ExtractionConfig, extract
from dfm_lightning.logging import WandbLogger
from dfm_lightning.modules import Classifier, load_classifier

rank_zero_info = rank_zero_only(print)

USAGE = """usage: dfm {fit,validate,test,robustness,extract,chain,crosseval} [--help] [--config FILE.yaml] ...

  fit         train M0 on origin data (cross-entropy, optionally L2 adversarial training)
  validate    validate a model on the held-out slice of the origin training set (data.val_size > 0)
  test        accuracy on the origin test set
  robustness  accuracy under L2-PGD for a list of eps (the paper's Table 2 protocol)
  extract     DfM: extract a dataset from a checkpoint, starting from substitute images
  chain       M0 -> D1 -> M1 -> ... -> Mn (the whole paper pipeline), resumable
  crosseval   accuracy of every model on every extracted dataset (the paper's Table 4)

Run `dfm SUBCOMMAND --help` for the options of one subcommand."""


class DFMTrainer(pl.Trainer):
    """Lightning's Trainer plus the ``robustness`` subcommand."""

    def robustness(self, model: Classifier, datamodule: OriginDataModule | None = None, ckpt_path: str | None = None,
                   eps: list[float] = [0, 1, 2, 3, 4], steps: int = 20, rel_step_size: float = 2.5) -> dict[str, float]:
        """Accuracy under L2-PGD (steps of rel_step_size * eps / steps) on the origin test set, for each eps."""
        if ckpt_path:
            model = load_classifier(ckpt_path)
        accs = evaluate_robustness(model.model, datamodule, eps, steps, rel_step_size, trainer=self)
        print(format_table({Path(ckpt_path).name if ckpt_path else model.hparams.arch: accs}))
        if isinstance(self.logger, WandbLogger):
            import wandb

            self.logger.experiment.log({"robustness": wandb.Table(columns=[f"eps={k}" for k in accs],
                                                                   data=[list(accs.values())])})
        return accs


class DFMCLI(LightningCLI):
    """LightningCLI over :class:`Classifier` and :class:`OriginDataModule`; the model's input shape follows ``data.name``."""

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        return {**LightningCLI.subcommands(), "robustness": {"model", "datamodule"}}

    def add_arguments_to_parser(self, parser) -> None:
        for i, key in enumerate(("model.in_channels", "model.input_size", "model.num_classes")):
            parser.link_arguments("data.name", key, compute_fn=lambda name, i=i: DATASET_SPECS[name][i])


def _lightning(argv: list[str]) -> None:
    args = None if argv == sys.argv[1:] else argv  # LightningCLI reads sys.argv itself when run as `dfm`
    DFMCLI(Classifier, OriginDataModule, trainer_class=DFMTrainer, args=args, seed_everything_default=0,
           trainer_defaults={"logger": lazy_instance(WandbLogger)}, save_config_kwargs={"overwrite": True},
           parser_kwargs={"prog": "dfm"})


def _parser(prog: str, description: str) -> ArgumentParser:
    parser = ArgumentParser(prog=f"dfm {prog}", description=description)
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML file with any of the options below")
    return parser


def _chain(argv: list[str]) -> None:
    parser = _parser("chain", "Run (or continue) the chain M0 -> D1 -> M1 -> ... -> Mn into --run_dir.")
    parser.add_class_arguments(ChainRunner)
    cfg = parser.instantiate_classes(parser.parse_args(argv))
    cfg.pop("config", None)
    cfg.pop("__path__", None)
    runner = ChainRunner(**cfg.as_dict() | {k: cfg[k] for k in cfg.keys() if "." not in k})
    result = runner.run()
    rank_zero_info(f"[chain] done: {runner.run_dir / 'results.json'}, {runner.run_dir / 'results.md'}, "
                   f"{runner.run_dir / 'accuracy.png'} ({len(result['generations'])} generations)")


def extract_command(ckpt_path: str, out_dir: str, extraction: ExtractionConfig = ExtractionConfig(), seed: int = 0,
                    root: str | None = None, trainer: dict | None = None) -> None:
    """DfM from one checkpoint into out_dir (resumable; an existing different extraction is never overwritten)."""
    from dfm_lightning.data.extracted import sha256_file

    module = load_classifier(ckpt_path)
    hp = module.hparams
    ds = extract(module.model, out_dir, extraction, seed=seed, source_sha256=sha256_file(ckpt_path), root=root,
                 trainer_kwargs=trainer, input_shape=(hp.in_channels, hp.input_size))
    rank_zero_info(f"[extract] {len(ds)} images in {out_dir} (manifest.json)")


def _extract(argv: list[str]) -> None:
    parser = _parser("extract", extract_command.__doc__)
    parser.add_function_arguments(extract_command)
    cfg = parser.instantiate_classes(parser.parse_args(argv))
    extract_command(**{k: cfg[k] for k in ("ckpt_path", "out_dir", "extraction", "seed", "root", "trainer")})


def crosseval_command(datasets: list[str], checkpoints: list[str], out_dir: str, num_samples: int = 10000,
                      trainer: dict | None = None) -> None:
    """Accuracy of every checkpoint on every extracted dataset, labels = argmax of the stored logits (Table 4)."""
    from dfm_lightning.evaluation.crosseval import crosseval, write_crosseval

    result = crosseval(datasets, checkpoints, num_samples, trainer_kwargs=trainer)
    write_crosseval(result, out_dir)
    print((Path(out_dir) / "crosseval.md").read_text())


def _crosseval(argv: list[str]) -> None:
    parser = _parser("crosseval", crosseval_command.__doc__)
    parser.add_function_arguments(crosseval_command)
    cfg = parser.parse_args(argv)
    crosseval_command(**{k: cfg[k] for k in ("datasets", "checkpoints", "out_dir", "num_samples", "trainer")})


COMMANDS = {"extract": _extract, "chain": _chain, "crosseval": _crosseval}


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``dfm`` console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if not argv or argv[0] in ("-h", "--help"):
            print(USAGE)
        elif argv[0] in COMMANDS:
            COMMANDS[argv[0]](argv[1:])
        else:
            _lightning(argv)
    except UserError as e:
        print(f"dfm: error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("dfm: interrupted; rerun the same command to continue where it stopped", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
