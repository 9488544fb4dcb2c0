"""ChainRunner: M0 -> D1 -> M1 -> ... -> Mn, each step seeing only what the previous one handed it.

Every generation gets a fresh model and fresh Trainers. Outputs live under ``run_dir``::

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
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytorch_lightning as pl
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.utilities import rank_zero_only

from dfm_lightning.data.extracted import (
    ExtractedDataModule,
    ExtractedDataset,
    atomic_write_bytes,
    atomic_write_json,
    holdout_split,
    sha256_file,
)
from dfm_lightning.data.origin import DATASET_SPECS, OriginDataModule
from dfm_lightning.data.substitute import SubstituteDataset
from dfm_lightning.errors import UserError
from dfm_lightning.evaluation.figures import save_accuracy_plot, save_extraction_grid
from dfm_lightning.evaluation.robustness import evaluate_robustness
from dfm_lightning.extraction.extractor import ExtractionConfig, extract
from dfm_lightning.logging import WandbLogger
from dfm_lightning.modules import Classifier, Distiller, load_classifier


@dataclass
class DataConfig:
    """The origin dataset: trains M0 and evaluates every generation (never seen by DtM)."""

    name: str = "mnist"
    root: str | None = None
    download: bool = True
    batch_size: int = 128
    augment: bool = False
    num_workers: int = 0


@dataclass
class M0Config:
    """M0: a checkpoint to start from, or how to train it (``adv_eps`` > 0: L2 adversarial training)."""

    ckpt_path: str | None = None
    arch: str = "lenet"
    max_epochs: int = 10
    optimizer: str = "adam"
    lr: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = "cosine"
    adv_eps: float = 0.0
    adv_steps: int = 10
    adv_step_size: float | None = None


@dataclass
class DistillConfig:
    """DtM on extracted data. ``arch`` None = the M0 architecture (set it for cross-architecture chains).
    Constant learning rate by default: logit regression under-fits at these budgets, and a cosine decay
    lost 1.2 points of held-out accuracy in docs/RESULTS.md's comparison."""

    arch: str | None = None
    max_epochs: int = 10
    optimizer: str = "adam"
    lr: float = 2e-3
    weight_decay: float = 0.0
    scheduler: str = "none"
    batch_size: int = 128
    val_size: int = 1000
    max_samples: int | None = None
    augment: bool = False
    num_workers: int = 0


@dataclass
class RobustnessConfig:
    """The Table 2 protocol; ``max_batches`` limits the test batches (an int count or a fraction)."""

    eps: list[float] = field(default_factory=lambda: [0, 1, 2, 3, 4])
    steps: int = 20
    rel_step_size: float = 2.5
    max_batches: int | float = 1.0


@dataclass
class WandbConfig:
    """W&B: ``mode`` online/offline/disabled (None: online if possible, else offline); ``enabled`` False = no logger."""

    enabled: bool = True
    project: str = "dfm_lightning"
    mode: str | None = None


# settings that may change between reruns of one chain (where and how it runs, not what it computes)
_RUNTIME_KEYS = {"generations", "trainer", "wandb", "run_dir"}


def _science(config: dict) -> dict:
    """The settings that decide what a chain computes (not where or how fast: devices, workers, logging).
    Options left at None are dropped too, so a run dir survives the addition of a new option."""
    drop = {"num_workers", "root", "download"}
    return {k: ({kk: vv for kk, vv in v.items() if kk not in drop and vv is not None} if isinstance(v, dict) else v)
            for k, v in config.items() if k not in _RUNTIME_KEYS}


class ChainRunner:
    """Runs the DtM/DfM chain for ``generations`` generations after M0 into ``run_dir``."""

    def __init__(self, run_dir: str, generations: int = 5, seed: int = 0, data: DataConfig = DataConfig(),
                 m0: M0Config = M0Config(), extraction: ExtractionConfig = ExtractionConfig(),
                 distill: DistillConfig = DistillConfig(), robustness: RobustnessConfig = RobustnessConfig(),
                 trainer: dict | None = None, wandb: WandbConfig = WandbConfig()):
        if generations < 0:
            raise UserError(f"generations must be >= 0, got {generations}")
        if data.name not in DATASET_SPECS:
            raise UserError(f"unknown dataset {data.name!r}; known: {', '.join(DATASET_SPECS)}")
        self.run_dir, self.generations, self.seed = Path(run_dir), generations, seed
        self.data, self.m0, self.extraction, self.distill = data, m0, extraction, distill
        self.robustness, self.trainer_kwargs, self.wandb = robustness, dict(trainer or {}), wandb
        self.channels, self.size, self.num_classes = DATASET_SPECS[data.name]

    def config(self) -> dict:
        return {"run_dir": str(self.run_dir), "generations": self.generations, "seed": self.seed,
                "data": asdict(self.data), "m0": asdict(self.m0), "extraction": asdict(self.extraction),
                "distill": asdict(self.distill), "robustness": asdict(self.robustness),
                "trainer": self.trainer_kwargs, "wandb": asdict(self.wandb)}

    def _check_config(self) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / "chain_config.json"
        science = _science(json.loads(json.dumps(self.config())))
        if path.exists():
            old = _science(json.loads(path.read_text()))
            if old != science:
                changed = sorted(k for k in science if science.get(k) != old.get(k))
                raise UserError(f"{self.run_dir} holds a chain with other settings ({', '.join(changed)}); "
                                "use a new --run_dir, or delete the old one")
        atomic_write_json(path, self.config())

    def run(self) -> dict:
        """Run (or continue) the chain; return the results dict also written to ``results.json``."""
        self._check_config()
        results = []
        for g in range(self.generations + 1):
            results.append(self._generation(g))
            self._write_results(results)
        return self._results(results)

    # -- one generation ---------------------------------------------------------------------------------
    def _generation(self, g: int) -> dict:
        gen_dir = self.run_dir / f"gen{g}"
        done = gen_dir / "eval.json"
        if done.exists():
            return json.loads(done.read_text())
        gen_dir.mkdir(parents=True, exist_ok=True)
        pl.seed_everything(self.seed + g, workers=True, verbose=False)
        logger = self._logger(g)
        extract_seconds, num_train = 0.0, None
        ckpt = gen_dir / "model.ckpt"
        if g > 0:
            t0 = time.time()
            prev = self.run_dir / f"gen{g - 1}" / "model.ckpt"
            dataset = extract(load_classifier(prev).model, gen_dir / "data", self.extraction, seed=self.seed + g,
                              source_sha256=sha256_file(prev), root=self.data.root,
                              trainer_kwargs=self.trainer_kwargs, input_shape=(self.channels, self.size))
            extract_seconds = dataset.manifest.get("extract_seconds", time.time() - t0)
            self._figure(dataset, g, gen_dir / "extracted.png", logger)
        t0 = time.time()
        if not ckpt.exists():
            num_train = self._train(g, gen_dir, logger)
        train_seconds = time.time() - t0
        module = load_classifier(ckpt)
        row = self._evaluate(module, g, logger)
        row.update(num_train_samples=num_train if num_train is not None else self._num_train(g),
                   train_seconds=round(train_seconds, 2), extract_seconds=round(extract_seconds, 2))
        atomic_write_json(done, row)
        self._finish_logger(logger, row)
        return row

    def _train(self, g: int, gen_dir: Path, logger) -> int | None:
        if g == 0 and self.m0.ckpt_path:
            load_classifier(self.m0.ckpt_path)  # validates the file before copying it in
            shutil.copyfile(self.m0.ckpt_path, gen_dir / ".model.ckpt.tmp")
            os.replace(gen_dir / ".model.ckpt.tmp", gen_dir / "model.ckpt")
            return self._num_train(0)
        shape = dict(in_channels=self.channels, num_classes=self.num_classes, input_size=self.size)
        if g == 0:
            c = self.m0
            module = Classifier(c.arch, **shape, optimizer=c.optimizer, lr=c.lr, weight_decay=c.weight_decay,
                                scheduler=c.scheduler, adv_eps=c.adv_eps, adv_steps=c.adv_steps,
                                adv_step_size=c.adv_step_size)
            dm = self._origin()
            epochs = c.max_epochs
        else:
            c = self.distill
            module = Distiller(c.arch or self.m0.arch, **shape, optimizer=c.optimizer, lr=c.lr,
                               weight_decay=c.weight_decay, scheduler=c.scheduler)
            dm = ExtractedDataModule(str(gen_dir / "data"), origin=self.data.name, root=self.data.root,
                                     download=self.data.download, batch_size=c.batch_size,
                                     num_workers=c.num_workers, val_size=c.val_size, max_samples=c.max_samples,
                                     augment=c.augment, split_seed=self.seed)
            epochs = c.max_epochs
        ckpt_dir = gen_dir / "checkpoints"
        last = ckpt_dir / "last.ckpt"
        trainer = self._trainer(max_epochs=epochs, default_root_dir=str(gen_dir), logger=logger or False,
                                callbacks=[ModelCheckpoint(dirpath=str(ckpt_dir), save_last=True, save_top_k=0)])
        trainer.fit(module, datamodule=dm, ckpt_path=str(last) if last.exists() else None)
        tmp = gen_dir / ".model.ckpt.tmp"
        trainer.save_checkpoint(str(tmp), weights_only=True)
        trainer.strategy.barrier()
        if trainer.is_global_zero:
            os.replace(tmp, gen_dir / "model.ckpt")
        trainer.strategy.barrier()
        return len(dm.train_set)

    def _trainer(self, **forced) -> pl.Trainer:
        """A fresh Trainer: the chain's ``trainer`` settings, with what this step needs on top."""
        return pl.Trainer(**{"enable_model_summary": False, **self.trainer_kwargs, **forced})

    def _num_train(self, g: int) -> int | None:
        """Training-set size of generation g's model (None for a handed-over M0: it is not known here)."""
        if g == 0 and self.m0.ckpt_path:
            return None
        if g == 0:
            dm = self._origin()
            dm.setup("fit")
            return len(dm.train_set)
        ds = ExtractedDataset(self.run_dir / f"gen{g}" / "data", verify=False)
        return len(holdout_split(ds, self.distill.val_size, self.distill.max_samples, self.seed)[0])

    def _origin(self) -> OriginDataModule:
        d = self.data
        return OriginDataModule(d.name, root=d.root, download=d.download, batch_size=d.batch_size,
                                num_workers=d.num_workers, augment=d.augment)

    def _evaluate(self, module: Classifier, g: int, logger) -> dict:
        dm = self._origin()
        trainer = self._trainer(logger=False, enable_checkpointing=False)
        test_acc = float(trainer.test(module, datamodule=dm, verbose=False)[0]["test/acc"])
        r = self.robustness
        trainer = self._trainer(logger=False, enable_checkpointing=False, limit_test_batches=r.max_batches)
        robust = evaluate_robustness(module.model, dm, r.eps, r.steps, r.rel_step_size, trainer=trainer)
        row = {"generation": g, "test_accuracy": round(test_acc, 6),
               "robust_accuracy": {k: round(v, 6) for k, v in robust.items()}}
        rank_zero_only(print)(f"[chain] M{g}: test accuracy {100 * test_acc:.2f}% | " +
                              " ".join(f"eps={k}: {100 * v:.1f}%" for k, v in robust.items()), flush=True)
        return row

    @rank_zero_only
    def _figure(self, dataset: ExtractedDataset, g: int, path: Path, logger) -> None:
        if path.exists():
            return
        idx = dataset.final_indices()[:8].tolist()
        n = len(idx)
        x, z = dataset.__getitems__(idx)
        subs = SubstituteDataset(self.extraction.substitute, n, self.channels, self.size, seed=self.seed + g,
                                 root=self.data.root).images(range(n))
        save_extraction_grid(subs, x, z, path, title=f"D{g}: substitutes (top) and extracted from M{g - 1} (bottom)")
        if logger is not None:
            logger.log_image("extracted", [str(path)])

    # -- logging and results ----------------------------------------------------------------------------
    def _logger(self, g: int):
        if not self.wandb.enabled:
            return None
        return WandbLogger(project=self.wandb.project, name=f"{self.run_dir.name}-gen{g}", group=self.run_dir.name,
                           job_type=f"gen{g}", save_dir=str(self.run_dir), mode=self.wandb.mode,
                           config=self.config())

    def _finish_logger(self, logger, row: dict) -> None:
        if logger is None:
            return
        import wandb

        metrics = {"generation": row["generation"], "chain/test_acc": row["test_accuracy"],
                   "chain/train_seconds": row["train_seconds"], "chain/extract_seconds": row["extract_seconds"]}
        metrics.update({f"chain/robust_acc_eps{k}": v for k, v in row["robust_accuracy"].items()})
        logger.experiment.log(metrics)
        logger.experiment.log({"chain/robustness": wandb.Table(
            columns=["generation"] + [f"eps={k}" for k in row["robust_accuracy"]],
            data=[[row["generation"]] + list(row["robust_accuracy"].values())])})
        wandb.finish()

    def _results(self, rows: list[dict]) -> dict:
        return {"generations": rows, "config": self.config()}

    @rank_zero_only
    def _write_results(self, rows: list[dict]) -> None:
        atomic_write_json(self.run_dir / "results.json", self._results(rows))
        atomic_write_bytes(self.run_dir / "results.md", results_markdown(rows, self.run_dir.name).encode())
        save_accuracy_plot(rows, self.run_dir / "accuracy.png", title=self.run_dir.name)


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
