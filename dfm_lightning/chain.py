"""ChainRunner: M0 -> D1 -> M1 -> ... -> Mn, each step seeing only what the previous one handed it.

Every generation gets a fresh model and fresh Trainers. The chain's options are the classes' own: ``model`` holds
:class:`Classifier`'s arguments (M0, exactly a ``dfm fit`` config's ``model`` block), ``data``
:class:`OriginDataModule`'s, ``distill`` :class:`Distiller`'s, ``distill_data`` :class:`ExtractedDataModule`'s,
``trainer`` the Trainer's (M0 trains with it as ``dfm fit`` would; every other step shares its devices),
``extraction`` :class:`ExtractionConfig`, ``robustness`` :class:`Robustness`. Outputs live under ``run_dir``::

    chain_config.json     the chain's settings (a rerun with other science settings is refused)
    gen0/model.ckpt       M0 (trained on origin data, or the given checkpoint)
    genG/data/            DG, extracted from M(G-1) (shards + manifest)
    genG/model.ckpt       MG, distilled from DG only
    genG/eval.json        its origin-test accuracy and Table 2 row; marks the generation done
    genG/extracted.png    substitutes above extracted images (the paper's Figure 2)
    results.json / results.md / accuracy.png   rewritten atomically after every generation

Rerunning the same command continues from the last completed step (extraction shards and Lightning's
``last.ckpt`` included); a finished generation is never recomputed. W&B: one run per generation, grouped
by chain (``group`` = run_dir name), so Lightning's step counters never clash.
"""
import inspect
import json
import logging
import os
import shutil
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_only

from dfm_lightning import lock, signals
from dfm_lightning.callbacks import ResumeCheckpoint, SharedDirCheck, StopOnSignal, load_resumable, with_fast_path
from dfm_lightning.data.extracted import (
    ExtractedDataModule,
    ExtractedDataset,
    atomic_write_bytes,
    atomic_write_json,
    holdout_split,
    read_json,
    sha256_file,
)
from dfm_lightning.data.origin import CLASS_NAMES, OriginDataModule
from dfm_lightning.data.substitute import SubstituteDataset, check_source
from dfm_lightning.errors import UserError
from dfm_lightning.evaluation.figures import save_accuracy_plot, save_extraction_grid
from dfm_lightning.evaluation.robustness import Robustness, evaluate_robustness
from dfm_lightning.extraction.extractor import ExtractionConfig, extract, method_of
from dfm_lightning.loggers import (
    WandbConfig,
    WandbLogger,
    check_wandb_env,
    log_artifact,
    make_artifact,
    run_id,
    wandb_quiet,
)
from dfm_lightning.modules import Classifier, Distiller, checkpoint_info, is_source, load_module, save_module

# set by the chain from the data (model and student shapes) or per generation (the extracted data's path)
SHAPE_KEYS = ("in_channels", "num_classes", "input_size")
DISTILL_DATA_SET_BY_CHAIN = ("path", "origin", "root", "download", "split_seed")
# Trainer options that say where and how fast a chain runs, not what it computes (may change between reruns)
TRAINER_RUNTIME_KEYS = {"accelerator", "devices", "num_nodes", "strategy", "enable_progress_bar", "enable_model_summary",
                        "enable_checkpointing", "default_root_dir", "log_every_n_steps", "callbacks", "plugins",
                        "profiler", "sync_batchnorm", "benchmark", "detect_anomaly", "num_sanity_val_steps",
                        "use_distributed_sampler", "barebones"}


def init_args(cls, kwargs: dict | None, what: str, skip: tuple[str, ...] = ()) -> dict:
    """``kwargs`` completed with ``cls``'s defaults; an argument ``cls`` does not take is a one-line error."""
    kwargs = dict(kwargs or {})
    params = {k: p for k, p in inspect.signature(cls).parameters.items() if k not in skip and k != "self"}
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise UserError(f"{what} does not take {', '.join(unknown)} ({cls.__name__} takes {', '.join(params)})")
    return {k: kwargs.get(k, p.default) for k, p in params.items() if k in kwargs or p.default is not p.empty}


def science(config: dict) -> dict:
    """The settings that decide what a chain computes (not where or how fast: devices, workers, logging).
    Options left at None are dropped too, so a run dir survives the addition of a new option."""
    drop = {"num_workers", "root", "download", "on_device", *TRAINER_RUNTIME_KEYS}
    return {k: ({kk: vv for kk, vv in v.items() if kk not in drop and vv is not None} if isinstance(v, dict) else v)
            for k, v in config.items() if k not in ("generations", "wandb", "run_dir", "checkpoint_every_s")}


class ChainRunner:
    """Runs the DtM/DfM chain for ``generations`` generations after M0 into ``run_dir``.

    Args:
        run_dir: where every output goes; rerunning continues there.
        generations: DfM -> DtM rounds after M0.
        seed_everything: generation g is seeded with ``seed_everything + g``.
        m0_ckpt_path: start from this M0 checkpoint instead of training one; its architecture is then the
            students' default.
        distill_epochs: DtM epochs per generation (M0's are ``trainer.max_epochs``).
        checkpoint_every_s: how often a training step writes its resumable ``last.ckpt`` (and before a stop), in
            seconds.
        extraction: how DfM runs.
        robustness: the Table 2 protocol every generation is evaluated with.
        wandb: W&B logging.
        trainer: Trainer arguments for every step (M0 trains with exactly these; ``max_epochs`` 10 unless set).
        data: OriginDataModule arguments: the origin dataset (M0 training and every evaluation).
        model: Classifier arguments for M0 (shapes follow ``data.name``).
        distill: Distiller arguments for the students; ``arch`` None = M0's architecture (and its ``arch_kwargs``).
        distill_data: ExtractedDataModule arguments for DtM (the path and origin dataset are set by the chain).
    """

    def __init__(self, run_dir: str, generations: int = 5, seed_everything: int = 0, m0_ckpt_path: str | None = None,
                 distill_epochs: int = 10, checkpoint_every_s: float = 60.0,
                 extraction: ExtractionConfig = ExtractionConfig(),
                 robustness: Robustness = Robustness(), wandb: WandbConfig = WandbConfig(), trainer: dict | None = None,
                 data: dict | None = None, model: dict | None = None, distill: dict | None = None,
                 distill_data: dict | None = None):
        if generations < 0 or distill_epochs < 0:
            raise UserError(f"generations and distill_epochs must be >= 0, got {generations}, {distill_epochs}")
        self.run_dir, self.generations, self.seed = Path(run_dir), generations, seed_everything
        self.m0_ckpt_path, self.distill_epochs, self.checkpoint_every_s = m0_ckpt_path, distill_epochs, checkpoint_every_s
        self.extraction, self.robustness, self.wandb = extraction, robustness, wandb
        if wandb.enabled:
            check_wandb_env()  # a bad WANDB_MODE fails now, not when gen0's logger starts
        init_args(pl.Trainer, trainer, "trainer")  # checks the keys; only what was set is kept (and recorded)
        # Lightning's defaults suit no chain step: 1000 epochs; a log point every 50 steps (none in a small epoch)
        self.trainer_kwargs = {"max_epochs": 10, "log_every_n_steps": 10, **(trainer or {})}
        self.data = init_args(OriginDataModule, data, "data")
        origin = OriginDataModule(**self.data)  # checks the dataset name, and that it is there or may download
        check_source(extraction.substitute, self.data["root"])
        method = method_of(extraction)
        self.shape = dict(in_channels=origin.in_channels, num_classes=origin.num_classes, input_size=origin.input_size)
        self.model = init_args(Classifier, model, "model", skip=SHAPE_KEYS)
        self.distill = init_args(Distiller, {"arch": None, **(distill or {})}, "distill", skip=SHAPE_KEYS)
        self.distill_data = init_args(ExtractedDataModule, distill_data, "distill_data", skip=DISTILL_DATA_SET_BY_CHAIN)
        if m0_ckpt_path:
            info = checkpoint_info(m0_ckpt_path)
            theirs = {k: info.get(k) for k in self.shape}
            if theirs != self.shape:
                raise UserError(f"--m0_ckpt_path {m0_ckpt_path} takes inputs/classes {theirs}, but data.name "
                                f"{self.data['name']!r} has {self.shape}; pass a checkpoint trained on that data")
            m0_arch = {"arch": info["arch"], "arch_kwargs": info.get("arch_kwargs")}
        else:
            m0_arch = {"arch": self.model["arch"], "arch_kwargs": self.model["arch_kwargs"]}
            # a bad architecture or optimizer, or a DfM method the model cannot take, fails now, not after M0
            method.check(Classifier(**self.model, **self.shape).model)
        if self.distill["arch"] is None:  # students are M0's architecture unless distill.arch says otherwise
            self.student = {**self.distill, **m0_arch, "arch_kwargs": self.distill["arch_kwargs"] or m0_arch["arch_kwargs"]}
        else:
            self.student = dict(self.distill)
        method.check(Distiller(**self.student, **self.shape).model)  # D2, D3, ... come from the students

    def config(self) -> dict:
        return {"run_dir": str(self.run_dir), "generations": self.generations, "seed_everything": self.seed,
                "m0_ckpt_path": self.m0_ckpt_path, "distill_epochs": self.distill_epochs,
                "extraction": asdict(self.extraction), "robustness": asdict(self.robustness),
                "wandb": asdict(self.wandb), "trainer": self.trainer_kwargs, "data": self.data, "model": self.model,
                "distill": self.distill, "distill_data": self.distill_data}

    def _check_config(self) -> None:
        path = self.run_dir / "chain_config.json"
        record = self._record()
        settings = science(record)
        if path.exists():
            old = science(read_json(path, {}, "nothing (it is rewritten from your settings); delete it"))
            changed = sorted(k for k in {*settings, *old} if settings.get(k) != old.get(k))
            locked = [k for k in changed if self._already_computed(k)]
            if locked:
                raise UserError(f"{self.run_dir} holds a chain with other settings ({', '.join(locked)}) whose steps "
                                "already ran; use a new --run_dir, or delete the old one")
            if read_json(path, {}, "") == record:
                return  # a plain rerun rewrites nothing
        if lock.is_rank_zero():  # under torchrun/srun every rank gets here at once
            atomic_write_json(path, record)

    # the outputs each setting decides: changing a setting is fine until one of them exists
    _DECIDES = {"model": ("m0",), "data": ("m0", "eval"), "m0_ckpt_path": ("m0",), "trainer": ("m0", "student"),
                "extraction": ("data",), "distill": ("student",), "distill_data": ("student",),
                "distill_epochs": ("student",), "robustness": ("eval",)}
    _OUTPUTS = {"m0": ("gen0/model.ckpt", "gen0/checkpoints/last.ckpt"), "data": ("gen*/data/config.json",),
                "student": ("gen[1-9]*/model.ckpt", "gen[1-9]*/checkpoints/last.ckpt"), "eval": ("gen*/eval.json",)}

    def _already_computed(self, key: str) -> bool:
        steps = self._DECIDES.get(key, tuple(self._OUTPUTS))  # anything else (the seed) decides every step
        return any(next(self.run_dir.glob(pattern), None) for step in steps for pattern in self._OUTPUTS[step])

    def run(self) -> dict:
        """Run (or continue) the chain; return the results dict also written to ``results.json``."""
        if self.run_dir.exists() and not self.run_dir.is_dir():
            raise UserError(f"--run_dir {self.run_dir} is a file; pass a directory")
        self.run_dir.mkdir(parents=True, exist_ok=True)  # by every rank: under torchrun/srun all start at once
        # Lightning's per-Trainer notes ("GPU available: ...", tips) would repeat for each of the chain's ~4 Trainers
        # per generation; its warnings still show, and the chain reports each step itself
        notes = logging.getLogger("pytorch_lightning.utilities.rank_zero")
        level = notes.level
        notes.setLevel(logging.WARNING)
        try:
            with lock.exclusive(self.run_dir):
                return self._run()
        finally:
            notes.setLevel(level)

    def _run(self) -> dict:
        self._check_config()
        results, fresh = [], False
        for g in range(self.generations + 1):
            done = (self.run_dir / f"gen{g}" / "eval.json").exists()
            try:
                results.append(self._generation(g, results))
            except signals.Stopped as e:
                raise signals.Stopped(e.signum, f"generation {g} ({e.where})") from None
            fresh = fresh or not done
            if fresh:  # rewritten once something new was computed: a failing rerun leaves the old tables intact
                self._write_results(results)
        if not fresh:
            self._write_results(results)
        return self._results(results)

    # -- one generation ---------------------------------------------------------------------------------
    def _generation(self, g: int, before: list[dict]) -> dict:
        gen_dir = self.run_dir / f"gen{g}"
        done = gen_dir / "eval.json"
        if done.exists():
            return read_json(done, {"generation": int, "test_accuracy": float, "robust_accuracy": dict},
                             f"generation {g}'s evaluation")
        gen_dir.mkdir(parents=True, exist_ok=True)
        pl.seed_everything(self.seed + g, workers=True, verbose=False)
        logger = self._logger(g)
        extract_seconds, num_train = 0.0, None
        ckpt = gen_dir / "model.ckpt"
        if g > 0:
            t0 = time.time()
            prev = self.run_dir / f"gen{g - 1}" / "model.ckpt"
            signals.check(f"D{g} extraction, before its first shard")
            try:
                dataset = extract(load_module(prev).model, gen_dir / "data", self.extraction, seed=self.seed + g,
                                  source_sha256=sha256_file(prev), root=self.data["root"],
                                  trainer_kwargs=self._with_checks(self.trainer_kwargs),
                                  input_shape=(self.shape["in_channels"], self.shape["input_size"]))
            except signals.Stopped as e:
                raise signals.Stopped(e.signum, f"D{g} extraction, {e.where} of this run") from None
            extract_seconds = dataset.manifest.get("extract_seconds", time.time() - t0)
            self._figure(dataset, g, gen_dir / "extracted.png", logger)
            self._log_dataset(logger, g, dataset)
        t0 = time.time()
        if not ckpt.exists():
            signals.check(f"M{g} training, before its first batch")
            num_train = self._train(g, gen_dir, logger)
        train_seconds = time.time() - t0
        module = load_module(ckpt)
        row = self._evaluate(module, g, logger)
        row.update(num_train_samples=num_train if num_train is not None else self._num_train(g),
                   train_seconds=round(train_seconds, 2), extract_seconds=round(extract_seconds, 2))
        atomic_write_json(done, row)
        self._finish_logger(logger, row, [*before, row])
        return row

    def _train(self, g: int, gen_dir: Path, logger) -> int | None:
        if g == 0 and self.m0_ckpt_path:
            module = load_module(self.m0_ckpt_path)  # validates the file before copying it in
            tmp = gen_dir / f".model.ckpt.tmp{os.getpid()}"  # per process: under torchrun/srun every rank copies
            if is_source(self.m0_ckpt_path):  # a model trained elsewhere becomes a checkpoint of this package
                save_module(module, tmp)
            else:
                shutil.copyfile(self.m0_ckpt_path, tmp)
            os.replace(tmp, gen_dir / "model.ckpt")
            return self._num_train(0)
        # seeded here, not only at the generation's start: whether this process also ran the extraction (whose
        # loaders draw from the global RNG) must not change the initial weights, or a resumed chain would differ
        pl.seed_everything(self.seed + g, workers=True, verbose=False)
        if g == 0:
            module, dm, epochs = Classifier(**self.model, **self.shape), self._origin(), {}
        else:
            module = Distiller(**self.student, **self.shape)
            dm = ExtractedDataModule(str(gen_dir / "data"), origin=self.data["name"], root=self.data["root"],
                                     download=self.data["download"], split_seed=self.seed, **self.distill_data)
            epochs = {"max_epochs": self.distill_epochs}
        last = gen_dir / "checkpoints" / "last.ckpt"  # written during training; a rerun continues from its batch
        trainer = self._trainer(**epochs, default_root_dir=str(gen_dir), logger=logger or False,
                                callbacks=[ResumeCheckpoint(last, every_s=self.checkpoint_every_s)])
        try:
            trainer.fit(module, datamodule=dm, ckpt_path=load_resumable(last))
        except signals.Stopped as e:
            raise signals.Stopped(e.signum, f"M{g} {e.where}", e.hint) from None
        tmp = gen_dir / ".model.ckpt.tmp"
        trainer.save_checkpoint(str(tmp), weights_only=True)
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            os.replace(tmp, gen_dir / "model.ckpt")
            last.unlink(missing_ok=True)  # model.ckpt now marks the step done
        trainer.strategy.barrier()
        return len(dm.train_set)

    def _with_checks(self, kwargs: dict) -> dict:
        """Trainer arguments plus the check, at the first setup, that every process sees this run dir, and the fast path."""
        return {**kwargs, "callbacks": with_fast_path([SharedDirCheck(self.run_dir), *(kwargs.get("callbacks") or [])])}

    def _trainer(self, **forced) -> pl.Trainer:
        """A fresh Trainer: the chain's ``trainer`` settings, with what this step needs on top (callbacks added)."""
        kwargs = self._with_checks(self.trainer_kwargs)
        callbacks = [*kwargs["callbacks"], *forced.pop("callbacks", [StopOnSignal("test batch")])]
        return pl.Trainer(**{"enable_model_summary": False, **kwargs, **forced, "callbacks": callbacks})

    def _num_train(self, g: int) -> int | None:
        """Training-set size of generation g's model (None for a handed-over M0: it is not known here)."""
        if g == 0 and self.m0_ckpt_path:
            return None
        if g == 0:
            dm = self._origin()
            dm.setup("fit")
            return len(dm.train_set)
        ds = ExtractedDataset(self.run_dir / f"gen{g}" / "data", verify=False)
        d = self.distill_data
        return len(holdout_split(ds, d["val_size"], d["max_samples"], self.seed)[0])

    def _origin(self) -> OriginDataModule:
        return OriginDataModule(**self.data)

    def _evaluate(self, module: Classifier, g: int, logger) -> dict:
        dm = self._origin()
        trainer = self._trainer(logger=False, enable_checkpointing=False)
        test_acc = float(trainer.test(module, datamodule=dm, verbose=False)[0]["test/acc"])
        trainer = self._trainer(logger=False, enable_checkpointing=False)
        robust, num_images = evaluate_robustness(module.model, dm, self.robustness, trainer=trainer)
        row = {"generation": g, "test_accuracy": round(test_acc, 6),
               "robust_accuracy": {k: round(v, 6) for k, v in robust.items()}, "robust_num_images": num_images}
        rank_zero_only(print)(f"[chain] M{g}: test accuracy {100 * test_acc:.2f}% | " +
                              " ".join(f"eps={k}: {100 * v:.1f}%" for k, v in robust.items()), flush=True)
        return row

    @rank_zero_only
    def _figure(self, dataset: ExtractedDataset, g: int, path: Path, logger) -> None:
        if not path.exists():
            final = dataset.final_indices()[:2000]
            _, z = dataset.__getitems__(final.tolist())
            classes = z.argmax(1).numpy()
            # one extracted image per class the model assigns (in class order), so no class repeats
            idx = [int(final[np.flatnonzero(classes == c)[0]]) for c in sorted(set(classes.tolist()))][:10]
            x, z = dataset.__getitems__(idx)
            subs = SubstituteDataset(self.extraction.substitute, self.extraction.num_samples,
                                     self.shape["in_channels"], self.shape["input_size"], seed=self.seed + g,
                                     root=self.data["root"]).images(dataset.substitute_ids()[idx].tolist())
            save_extraction_grid(subs, x, z, path, title=f"D{g}: substitutes x_s (top), extracted from M{g - 1} (bottom)",
                                 class_names=CLASS_NAMES.get(self.data["name"]))
        if logger is not None:  # also when resumed: the rerun's run must show it too
            logger.log_image("extracted", [str(path)])

    # -- logging and results ----------------------------------------------------------------------------
    def _logger(self, g: int):
        if not self.wandb.enabled:
            return None
        w = self.wandb
        return WandbLogger(project=w.project, name=f"{self.run_dir.name}-gen{g}", group=self.run_dir.name,
                           job_type=f"gen{g}", save_dir=str(self.run_dir), mode=w.mode, config=self.config(),
                           id=run_id(self.run_dir, f"gen{g}"), resume="allow", entity=w.entity, tags=w.tags,
                           notes=w.notes, settings=wandb_quiet())

    def _record(self) -> dict:
        """The chain's settings as JSON (callbacks and plugins are objects: recorded as class path and plain settings)."""
        return json.loads(json.dumps(self.config(), default=_describe))

    def _artifact_name(self, kind: str, g: int) -> str:
        return f"{self.run_dir.name}-{kind}{g}"

    def _model_ref(self, g: int, sha256: str) -> str:
        return f"{self._artifact_name('M', g)}:sha256-{sha256[:16]}"

    @rank_zero_only
    def _log_dataset(self, logger, g: int, dataset: ExtractedDataset) -> None:
        """D(g) to W&B: the extraction's per-shard metrics and summary, and the dataset as an artifact made from M(g-1)."""
        if logger is None:
            return
        import wandb

        run, m = logger.experiment, dataset.manifest
        shards = [s for s in m["shards"] if "metrics" in s]
        if shards:
            keys = list(shards[0]["metrics"])
            table = wandb.Table(columns=["shard", *keys], data=[[s["shard"], *s["metrics"].values()] for s in shards])
            shown = "logit_distance" if "logit_distance" in keys else "delta_l2"  # what the method minimises, if known
            run.log({"extract/shards": table,
                     f"extract/{shown}_per_shard": wandb.plot.line(table, "shard", shown, title=f"D{g}: {shown} per shard")})
            run.summary.update({f"extract/{k}": v for k, v in (m.get("metrics") or {}).items()})
        if not self.wandb.log_artifacts:
            return
        source = self._model_ref(g - 1, m.get("source_checkpoint_sha256") or "")
        meta = {"generation": g, "num_samples": m["num_samples"], "num_shards": len(m["shards"]),
                "image_shape": m.get("image_shape"), "source_checkpoint_sha256": m.get("source_checkpoint_sha256"),
                "extraction": m.get("config"), "metrics": m.get("metrics"), "derived_from": source,
                "chain_config": science(self._record())}
        files = sorted(p for p in dataset.path.iterdir() if p.is_file() and not p.name.startswith("."))
        art = make_artifact(self._artifact_name("D", g), "dataset", files, meta, self.wandb.reference_above_mb)
        log_artifact(run, art, inputs=[source], aliases=[f"sha256-{sha256_file(dataset.path / 'manifest.json')[:16]}"])

    @rank_zero_only
    def _finish_logger(self, logger, row: dict, rows: list[dict]) -> None:
        """The generation's figures, the chain so far (a table and a chart of every generation) and M(g) as an
        artifact; then the run ends."""
        if logger is None:
            return
        import wandb

        run, g = logger.experiment, row["generation"]
        metrics = {"generation": g, "chain/test_acc": row["test_accuracy"],
                   "chain/train_seconds": row["train_seconds"], "chain/extract_seconds": row["extract_seconds"]}
        metrics.update({f"chain/robust_acc_eps{k}": v for k, v in row["robust_accuracy"].items()})
        run.log(metrics)
        eps = list(row["robust_accuracy"])
        table = wandb.Table(columns=["generation", "test_acc", *[f"eps={e}" for e in eps]],
                            data=[[r["generation"], r["test_accuracy"], *[r["robust_accuracy"].get(e) for e in eps]]
                                  for r in rows])
        run.log({"chain/generations": table,  # Tables 1 and 2 of this chain so far
                 "chain/accuracy_vs_generation": wandb.plot.line_series(
                     xs=[r["generation"] for r in rows],
                     ys=[[100 * r["test_accuracy"] for r in rows],
                         *[[100 * r["robust_accuracy"].get(e, float("nan")) for r in rows] for e in eps]],
                     keys=["test accuracy", *[f"L2 eps={e}" for e in eps]], title=f"{self.run_dir.name}: accuracy (%)",
                     xname="generation"),
                 "chain/results_md": wandb.Html(f"<pre>{results_markdown(rows, self.run_dir.name)}</pre>")})
        run.summary.update({"chain/test_acc": row["test_accuracy"], "generation": g})
        ckpt = self.run_dir / f"gen{g}" / "model.ckpt"
        if self.wandb.log_artifacts and ckpt.exists():
            sha = sha256_file(ckpt)
            meta = {"generation": g, **row, "sha256": sha, "arch": checkpoint_info(ckpt).get("arch"),
                    "derived_from": self._artifact_name("D", g) if g else self.data["name"],
                    "chain_config": science(self._record())}
            art = make_artifact(self._artifact_name("M", g), "model", [ckpt], meta, reference_above_mb=float("inf"))
            log_artifact(run, art, aliases=[f"sha256-{sha[:16]}"])
        wandb.finish()

    def _results(self, rows: list[dict]) -> dict:
        return {"generations": rows, "config": self._record()}

    @rank_zero_only
    def _write_results(self, rows: list[dict]) -> None:
        atomic_write_json(self.run_dir / "results.json", self._results(rows))
        atomic_write_bytes(self.run_dir / "results.md", results_markdown(rows, self.run_dir.name).encode())
        save_accuracy_plot(rows, self.run_dir / "accuracy.png", title=self.run_dir.name)


def _describe(obj) -> dict:
    """A settings object (a callback, a plugin) as JSON: its class path and its plain public attributes."""
    plain = (bool, int, float, str, type(None))
    return {"class_path": f"{type(obj).__module__}.{type(obj).__qualname__}",
            "init_args": {k: v for k, v in vars(obj).items() if not k.startswith("_") and isinstance(v, plain)}}


def results_markdown(rows: list[dict], title: str) -> str:
    """The paper's Tables 1 and 2 for one chain: accuracy per generation, and accuracy under L2-PGD per eps."""
    eps = list(rows[0]["robust_accuracy"])
    lines = [f"# {title}", "", "| model | test acc (%) | " + " | ".join(f"eps={e}" for e in eps) +
             " | train samples | train s | extract s |", "|---|---:|" + "---:|" * len(eps) + "---:|---:|---:|"]
    for r in rows:
        lines.append(f"| M{r['generation']} | {100 * r['test_accuracy']:.2f} | " +
                     " | ".join(f"{100 * r['robust_accuracy'][e]:.1f}" for e in eps) +
                     f" | {r['num_train_samples'] or '?'} | {r['train_seconds']:.0f} | {r['extract_seconds']:.0f} |")
    return "\n".join(lines) + "\n"
