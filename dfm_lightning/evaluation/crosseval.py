"""The paper's Table 4: accuracy of every model on every extracted dataset, where a sample's label is the
argmax of its stored logits. The model a dataset was extracted from should score 100% (checked by sha256)."""
from pathlib import Path

import pytorch_lightning as pl

from dfm_lightning.callbacks import with_fast_path
from dfm_lightning.data.extracted import ExtractedDataset, atomic_write_bytes, atomic_write_json, sha256_file
from dfm_lightning.data.origin import EvalDataModule, ImageDataset
from dfm_lightning.modules import load_module


def labelled_by_logits(ds: ExtractedDataset, num_samples: int) -> ImageDataset:
    """The first ``num_samples`` extracted images x' of a dataset, labelled by the argmax of their stored logits."""
    x, z = ds.__getitems__(ds.final_indices()[:num_samples].tolist())
    return ImageDataset(x, z.argmax(1))


def crosseval(datasets: list[str], checkpoints: list[str], num_samples: int = 10000, batch_size: int = 512,
              trainer_kwargs: dict | None = None) -> dict:
    """Accuracy matrix (rows: checkpoints, columns: datasets) plus, per dataset, which checkpoint produced it."""
    extracted = [ExtractedDataset(d) for d in datasets]  # checked and verified: a bad manifest is one line
    sources = [ds.manifest.get("source_checkpoint_sha256") for ds in extracted]
    hashes = [sha256_file(c) for c in checkpoints]
    data = [EvalDataModule(labelled_by_logits(ds, num_samples), batch_size=batch_size) for ds in extracted]
    matrix = []
    for ckpt in checkpoints:
        module = load_module(ckpt)
        kwargs = trainer_kwargs or {}
        trainer = pl.Trainer(**{"logger": False, "enable_model_summary": False, "enable_progress_bar": False,
                                **kwargs, "callbacks": with_fast_path(kwargs.get("callbacks"))})
        matrix.append([float(trainer.test(module, datamodule=dm, verbose=False)[0]["test/acc"]) for dm in data])
    return {"datasets": [str(d) for d in datasets], "checkpoints": [str(c) for c in checkpoints],
            "num_samples": num_samples, "accuracy": matrix,
            "source": [hashes.index(s) if s in hashes else None for s in sources]}


def short_name(path: str) -> str:
    """RUN/genG for a chain's RUN/genG/data or RUN/genG/model.ckpt, else the file or directory name."""
    p = Path(path)
    return f"{p.parent.parent.name}/{p.parent.name}" if p.name in ("data", "model.ckpt") else p.name


def write_crosseval(result: dict, out_dir: str | Path) -> None:
    """``crosseval.json`` and ``crosseval.md`` (Table 4's layout; * marks the model a dataset came from)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out_dir / "crosseval.json", result)
    names = [short_name(d) for d in result["datasets"]]
    lines = ["| model \\ data | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for i, (ckpt, row) in enumerate(zip(result["checkpoints"], result["accuracy"])):
        cells = [f"{100 * a:.1f}{'*' if result['source'][j] == i else ''}" for j, a in enumerate(row)]
        lines.append(f"| {short_name(ckpt)} | " + " | ".join(cells) + " |")
    atomic_write_bytes(out_dir / "crosseval.md", ("\n".join(lines) + "\n\n* = the model the data was extracted from\n").encode())
