"""The subcommands behind ``dfm``, imported only when one runs (Lightning alone takes seconds to import).

``fit validate test robustness`` are LightningCLI's; ``chain extract crosseval`` are jsonargparse parsers built
from the same signatures (:class:`~pytorch_lightning.Trainer`, :class:`Classifier`, :class:`OriginDataModule`,
...), so an option is spelled and typed the same way everywhere and a ``dfm fit`` config is a chain's M0 part.
"""
import atexit
import inspect
import json
import shutil
import tempfile
from pathlib import Path

import pytorch_lightning as pl
from jsonargparse import ActionConfigFile, ArgumentParser, Namespace, lazy_instance
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.utilities import rank_zero_only

from dfm_lightning import lock
from dfm_lightning.callbacks import FastPath, ResumeCheckpoint
from dfm_lightning.chain import DISTILL_DATA_SET_BY_CHAIN, SHAPE_KEYS, ChainRunner
from dfm_lightning.data.extracted import ExtractedDataModule, sha256_file
from dfm_lightning.data.origin import DATASET_SPECS, OriginDataModule
from dfm_lightning.errors import UserError
from dfm_lightning.evaluation.robustness import Robustness, evaluate_robustness, format_table
from dfm_lightning.extraction.extractor import ExtractionConfig, extract
from dfm_lightning.loggers import WandbLogger
from dfm_lightning.modules import Classifier, Distiller, checkpoint_info, is_source, load_module, save_module

rank_zero_info = rank_zero_only(print)


class DFMTrainer(pl.Trainer):
    """Lightning's Trainer plus the ``robustness`` subcommand, and a resumable ``last.ckpt`` in ``default_root_dir``
    that a stop signal writes before ending ``dfm fit`` (continue with ``--ckpt_path`` it)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        last = Path(self.default_root_dir) / "last.ckpt"
        self.callbacks.append(ResumeCheckpoint(last, hint=f"rerun with --ckpt_path {last} to continue"))
        if not any(isinstance(c, FastPath) for c in self.callbacks):
            self.callbacks.append(FastPath())

    def robustness(self, model: Classifier, datamodule: OriginDataModule | None = None, ckpt_path: str | None = None,
                   protocol: Robustness = Robustness()) -> dict[str, float]:
        """Accuracy under L2-PGD on the origin test set, for each eps (the paper's Table 2 protocol).

        ``protocol`` is the chain's ``robustness`` block (one class, :class:`Robustness`); LightningCLI already
        names this subcommand's option group ``robustness``, hence the other name here."""
        if ckpt_path:
            model = load_module(ckpt_path)
            theirs = (model.hparams.in_channels, model.hparams.input_size, model.hparams.num_classes)
            if datamodule is not None and theirs != DATASET_SPECS[datamodule.name]:
                raise UserError(f"checkpoint {ckpt_path} takes (channels, size, classes) {theirs}, but data.name "
                                f"{datamodule.name!r} has {DATASET_SPECS[datamodule.name]}; pass matching --data.name")
        accs, num_images = evaluate_robustness(model.model, datamodule, protocol, trainer=self)
        rank_zero_info(format_table({Path(ckpt_path).name if ckpt_path else model.hparams.arch: accs}) +
                       f"\n({num_images} test images, {protocol.steps} PGD steps)")
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
        for key in SHAPE_KEYS:
            parser.link_arguments("data.name", f"model.{key}", compute_fn=lambda name, key=key: _shape(name)[key])


def _shape(name: str) -> dict:
    channels, size, classes = DATASET_SPECS.get(name, DATASET_SPECS["mnist"])  # an unknown name fails in the data module
    return {"in_channels": channels, "input_size": size, "num_classes": classes}


def lightning(argv: list[str], run: bool = True) -> DFMCLI:
    """fit / validate / test / robustness (``run=False``: argv without the subcommand; builds model, data and
    Trainer, trains nothing). The optimiser is the model's own option: LightningCLI's automatic
    ``--optimizer``/``--lr_scheduler`` are switched off, so a checkpoint's hyper-parameters say what trained it."""
    argv = list(argv)
    for i, arg in enumerate(argv):  # LightningCLI reads a --ckpt_path itself, and a bad one would be a traceback
        if arg == "--ckpt_path" and i + 1 < len(argv) or arg.startswith("--ckpt_path="):
            path = argv[i + 1] if arg == "--ckpt_path" else arg.split("=", 1)[1]
            if path not in ("null", "None", "last", "best", "hpc", "registry"):
                checkpoint_info(path)
            if is_source(path):  # a model source file: LightningCLI reads checkpoints only, so hand it one
                tmp = tempfile.mkdtemp(prefix="dfm-source-")
                atexit.register(shutil.rmtree, tmp, ignore_errors=True)  # the conversion lives as long as the command
                converted = Path(tmp) / f"{Path(path).stem}.ckpt"
                save_module(load_module(path), converted)
                argv[i + 1 if arg == "--ckpt_path" else i] = str(converted) if arg == "--ckpt_path" \
                    else f"--ckpt_path={converted}"
    return DFMCLI(Classifier, OriginDataModule, trainer_class=DFMTrainer, args=argv, seed_everything_default=0,
                  trainer_defaults={"logger": lazy_instance(WandbLogger), "log_every_n_steps": 10}, save_config_kwargs={"overwrite": True},
                  auto_configure_optimizers=False, run=run, parser_kwargs={"prog": "dfm", "exit_on_error": False})


# -- jsonargparse subcommands: the same groups, built from the same signatures --------------------------------------
def _parser(prog: str, description: str) -> ArgumentParser:
    parser = ArgumentParser(prog=f"dfm {prog}", description=description, exit_on_error=False)
    parser.add_argument("--config", action=ActionConfigFile, help="a YAML file with any of the options below (repeatable)")
    return parser


def _add_trainer(parser: ArgumentParser) -> None:
    """``--trainer.*``: the Trainer's own signature, typed and checked (the logger is the command's business)."""
    parser.add_class_arguments(pl.Trainer, "trainer", instantiate=False, fail_untyped=False, skip={"logger"})


def _set(ns: Namespace | None, cls) -> dict:
    """The options of ``ns`` that differ from ``cls``'s defaults (so records and Trainers see only what was set)."""
    defaults = {k: p.default for k, p in inspect.signature(cls).parameters.items()}
    return {k: v for k, v in (ns.as_dict() if ns is not None else {}).items() if k not in defaults or v != defaults[k]}


def _instantiate(parser: ArgumentParser, cfg: Namespace) -> Namespace:
    # jsonargparse >= 4.40 renamed instantiate_classes (which now warns) to instantiate
    return parser.instantiate(cfg) if hasattr(parser, "instantiate") else parser.instantiate_classes(cfg)


def chain_parser() -> ArgumentParser:
    """``dfm chain``'s options: ChainRunner's own, plus one group per class, each built from its signature."""
    parser = _parser("chain", "Run (or continue) the chain M0 -> D1 -> M1 -> ... -> Mn into --run_dir.")
    parser.add_class_arguments(ChainRunner, skip=set(CHAIN_GROUPS) | {"trainer"})
    _add_trainer(parser)
    for key, cls in CHAIN_GROUPS.items():
        skip = set(DISTILL_DATA_SET_BY_CHAIN) if cls is ExtractedDataModule else set(SHAPE_KEYS) if key != "data" else set()
        parser.add_class_arguments(cls, key, instantiate=False, skip=skip)
    parser.set_defaults({"distill.arch": None})  # None: the students take M0's architecture
    return parser


CHAIN_GROUPS = {"data": OriginDataModule, "model": Classifier, "distill": Distiller, "distill_data": ExtractedDataModule}


def build_chain(argv: list[str]) -> ChainRunner:
    """Parse ``dfm chain`` options and build the runner (every setting checked, nothing run)."""
    parser = chain_parser()
    cfg = _instantiate(parser, parser.parse_args(argv))
    own = [k for k in inspect.signature(ChainRunner).parameters if k not in CHAIN_GROUPS and k != "trainer"]
    return ChainRunner(**{k: cfg[k] for k in own}, trainer=_set(cfg.trainer, pl.Trainer),
                       **{k: cfg[k].as_dict() for k in CHAIN_GROUPS})


def chain(argv: list[str]) -> None:
    runner = build_chain(argv)
    result = runner.run()
    rank_zero_info(f"[chain] done: {runner.run_dir / 'results.json'}, {runner.run_dir / 'results.md'}, "
                   f"{runner.run_dir / 'accuracy.png'} ({len(result['generations'])} generations)")


def extract_command(ckpt_path: str, out_dir: str, extraction: ExtractionConfig = ExtractionConfig(),
                    seed_everything: int = 0, root: str | None = None, trainer: dict | None = None) -> None:
    """DfM from one checkpoint into out_dir (resumable; an existing different extraction is never overwritten)."""
    module = load_module(ckpt_path)
    hp = module.hparams
    if Path(out_dir).exists() and not Path(out_dir).is_dir():
        raise UserError(f"--out_dir {out_dir} is a file; pass a directory")
    with lock.exclusive(out_dir):
        ds = extract(module.model, out_dir, extraction, seed=seed_everything, source_sha256=sha256_file(ckpt_path),
                     root=root, trainer_kwargs=trainer, input_shape=(hp.in_channels, hp.input_size))
    rank_zero_info(f"[extract] {len(ds)} images in {out_dir} (manifest.json)")


def crosseval_command(datasets: list[str], checkpoints: list[str], out_dir: str, num_samples: int = 10000,
                      trainer: dict | None = None) -> None:
    """Accuracy of every checkpoint on every extracted dataset, labels = argmax of the stored logits (Table 4)."""
    from dfm_lightning.evaluation.crosseval import crosseval, write_crosseval

    result = crosseval(datasets, checkpoints, num_samples, trainer_kwargs=trainer)
    write_crosseval(result, out_dir)
    print((Path(out_dir) / "crosseval.md").read_text())


def report_command(run_dirs: list[str], out_dir: str | None = None) -> None:
    """The paper's tables for chains (run dirs or results.json files; seeds of one setting pooled): Table 1 with the
    paper's row where the setting matches, Table 2, a Table 4 per crosseval.json in the run dirs. Printed as markdown;
    with --out_dir also written as .md/.csv/.tex, report.md and accuracy.png."""
    from dfm_lightning.report import report

    print(report(run_dirs, out_dir))


def _function_command(fn):
    """A subcommand whose options are ``fn``'s signature (``--trainer.*`` typed from the Trainer's if it takes one)."""

    takes_trainer = "trainer" in inspect.signature(fn).parameters

    def run(argv: list[str]) -> None:
        parser = _parser(fn.__name__.removesuffix("_command"), fn.__doc__)
        parser.add_function_arguments(fn, skip={"trainer"})
        if takes_trainer:
            _add_trainer(parser)
        cfg = _instantiate(parser, parser.parse_args(argv))
        kwargs = {k: cfg[k] for k in inspect.signature(fn).parameters if k != "trainer"}
        fn(**kwargs, **({"trainer": _set(cfg.trainer, pl.Trainer)} if takes_trainer else {}))

    run.__doc__ = fn.__doc__
    return run


def report(argv: list[str]) -> None:
    """``dfm report RUN_DIR... [--out_dir DIR]``: the leading arguments are the run dirs (or ``--run_dirs '[...]'``)."""
    n = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    _function_command(report_command)((["--run_dirs", json.dumps(argv[:n])] if n else []) + argv[n:])


COMMANDS = {"chain": chain, "extract": _function_command(extract_command), "crosseval": _function_command(crosseval_command),
            "report": report}
