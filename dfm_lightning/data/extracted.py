"""An extracted dataset on disk: .npy shards (x', Z(x')) plus a JSON manifest with every shard's sha256.

Layout of a dataset directory::

    config.json                  what produced it (written first; a rerun with another config is refused)
    shard-00000.images.npy       float32 (n, C, H, W) extracted images x'
    shard-00000.logits.npy       float32 (n, K) the source model's logits Z(x')
    shard-00000.json             sha256 + bytes of both files; written last, so it marks the shard complete
    manifest.json                counts, shapes, dtypes, source checkpoint sha256, config, seed, all shards

Every file is written atomically (temporary name, then rename). Loading verifies sizes and hashes and
memory-maps the arrays, so a 500k-image dataset never has to fit in RAM.
"""
import hashlib
import json
import os
import re
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from dfm_lightning.data.origin import ImageDataModule, ImageDataset, load_origin
from dfm_lightning.errors import UserError

FORMAT = "dfm-extracted/1"
SHARD_FILE = re.compile(r"shard-\d{5}\.(images|logits)\.npy")


def sha256_file(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic(path: Path, write) -> None:
    """``write(f)`` into a temporary name beside ``path``, fsync, rename over it; the temporary file is removed
    on any error (a full disk leaves nothing behind)."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    _atomic(Path(path), lambda f: f.write(data))


def atomic_write_json(path: Path, obj: dict) -> None:
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode())


def read_json(path: str | Path, required: dict[str, type], what: str) -> dict:
    """A bookkeeping JSON file, checked: an object holding ``required`` keys of the given types. A damaged one is a
    one-line :class:`UserError` that names the file and what to do."""
    path = Path(path)
    fix = f"delete it to recompute {what}, or restore it from a copy"
    try:
        obj = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise UserError(f"{path} is not valid JSON ({e}); {fix}") from None
    if not isinstance(obj, dict):
        raise UserError(f"{path} should hold a JSON object; {fix}")
    for key, kind in required.items():
        if not isinstance(obj.get(key), kind):
            raise UserError(f"{path} lacks {key!r} (or it has the wrong type); {fix}")
    return obj


SHARD_RECORD = {"shard": int, "count": int, "images": dict, "logits": dict}


def _save_npy(path: Path, array: np.ndarray) -> dict:
    _atomic(path, lambda f: np.save(f, np.ascontiguousarray(array), allow_pickle=False))
    return {"file": path.name, "bytes": path.stat().st_size, "sha256": sha256_file(path)}


def shard_name(shard: int) -> str:
    return f"shard-{shard:05d}"


def write_shard(out_dir: str | Path, shard: int, images: np.ndarray, logits: np.ndarray,
                metrics: dict | None = None) -> dict:
    """Write one shard's arrays, then its completion record (with the extraction's ``metrics`` for this shard, if
    any); return that record."""
    out_dir = Path(out_dir)
    name = shard_name(shard)
    record = {
        "shard": shard,
        "count": int(len(images)),
        "images": _save_npy(out_dir / f"{name}.images.npy", images.astype(np.float32, copy=False)),
        "logits": _save_npy(out_dir / f"{name}.logits.npy", logits.astype(np.float32, copy=False)),
        **({"metrics": metrics} if metrics else {}),
    }
    atomic_write_json(out_dir / f"{name}.json", record)
    return record


def complete_shards(out_dir: str | Path) -> set[int]:
    """Shards whose completion record exists (their files are verified later, on load)."""
    return {int(p.name[6:11]) for p in Path(out_dir).glob("shard-?????.json")}


def write_manifest(out_dir: str | Path, num_shards: int, extra: dict) -> dict:
    """Collect all shard records into ``manifest.json``; every shard must be complete."""
    out_dir = Path(out_dir)
    missing = [k for k in range(num_shards) if not (out_dir / f"{shard_name(k)}.json").exists()]
    if missing:
        raise UserError(f"{out_dir}: shards {missing[:5]} are missing; rerun the extraction to complete them")
    shards = [read_json(out_dir / f"{shard_name(k)}.json", SHARD_RECORD, "that shard (delete its .npy files too)")
              for k in range(num_shards)]
    first = np.load(out_dir / shards[0]["images"]["file"], mmap_mode="r")
    logits = np.load(out_dir / shards[0]["logits"]["file"], mmap_mode="r")
    manifest = {
        "format": FORMAT,
        "num_samples": sum(s["count"] for s in shards),
        **({"metrics": summarize_metrics(shards)} if all("metrics" in s for s in shards) else {}),
        "image_shape": list(first.shape[1:]),
        "num_classes": int(logits.shape[1]),
        "dtypes": {"images": str(first.dtype), "logits": str(logits.dtype)},
        **extra,
        "shards": shards,
    }
    atomic_write_json(out_dir / "manifest.json", manifest)
    return manifest


def summarize_metrics(shards: list[dict]) -> dict:
    """The shards' extraction metrics as one record: means weighted by shard size; ``images_per_s`` = all images
    over the summed time of the shards (one process's throughput; under DDP several ran at once)."""
    total = sum(s["count"] for s in shards)
    keys = [k for k in shards[0]["metrics"] if k != "seconds"]
    out = {k: round(sum(s["metrics"][k] * s["count"] for s in shards) / total, 6) for k in keys}
    seconds = sum(s["metrics"]["seconds"] for s in shards)
    return {**out, "seconds": round(seconds, 2), "images_per_s": round(total / seconds, 1) if seconds else None}


class ExtractedDataset(Dataset):
    """All shards of an extracted dataset, verified and memory-mapped; items are (x', Z(x'))."""

    def __init__(self, path: str | Path, verify: bool = True):
        self.path = Path(path)
        mf = self.path / "manifest.json"
        if not mf.exists():
            raise UserError(f"{mf} not found: {self.path} is not a finished extracted dataset (run `dfm extract` first)")
        self.manifest = read_json(mf, {"shards": list, "num_samples": int}, "the manifest (rerun the same extraction)")
        self.images, self.logits = [], []
        for s in self.manifest["shards"]:
            for key, store in (("images", self.images), ("logits", self.logits)):
                if not isinstance(s, dict) or not isinstance(s.get(key), dict):
                    raise UserError(f"{mf} has a damaged shard entry; delete it and rerun the same extraction")
                store.append(self._open(s[key], verify))
        counts = [len(a) for a in self.images]
        self.offsets = np.cumsum([0] + counts)

    def _open(self, rec: dict, verify: bool) -> np.ndarray:
        name = rec.get("file")
        # a manifest names files inside its own directory only: never follow ../ or an absolute path
        if not isinstance(name, str) or not SHARD_FILE.fullmatch(name):
            raise UserError(f"{self.path / 'manifest.json'} names shard file {name!r}, which is not a shard of this "
                            "directory; delete the manifest and rerun the same extraction")
        f = self.path / name
        fix = "delete it and its .json, then rerun the same `dfm extract`/`dfm chain` to regenerate it"
        if not f.exists():
            raise UserError(f"shard file {f} is missing; {fix}")
        if f.stat().st_size != rec.get("bytes"):
            raise UserError(f"shard file {f} is truncated or altered ({f.stat().st_size} bytes, manifest says {rec.get('bytes')}); {fix}")
        if verify and sha256_file(f) != rec.get("sha256"):
            raise UserError(f"shard file {f} is corrupted (sha256 differs from manifest); {fix}")
        try:
            return np.load(f, mmap_mode="r", allow_pickle=False)
        except ValueError as e:  # e.g. a pickled object array: refused, never unpickled
            raise UserError(f"shard file {f} is not a plain array ({e}); {fix}") from None

    def __len__(self) -> int:
        return int(self.offsets[-1])

    @property
    def samples_per_substitute(self) -> int:
        """1, or 1 + the number of trajectory snapshots stored per substitute image."""
        return 1 + len(self.manifest.get("config", {}).get("snapshot_steps") or [])

    def final_indices(self) -> np.ndarray:
        """Indices of the final DfM iterates x' (all samples, unless trajectory snapshots were stored too:
        then each shard holds its final iterates first)."""
        per = self.samples_per_substitute
        return np.concatenate([np.arange(a, a + (b - a) // per) for a, b in zip(self.offsets[:-1], self.offsets[1:])])

    def substitute_ids(self) -> np.ndarray:
        """For every sample, the index of the substitute image it was extracted from (its snapshots share it)."""
        per = self.samples_per_substitute
        return np.concatenate([a // per + np.arange(b - a) % ((b - a) // per)
                               for a, b in zip(self.offsets[:-1], self.offsets[1:])])

    def __getitems__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.asarray(idx)
        order = np.argsort(idx, kind="stable")
        shard = np.searchsorted(self.offsets, idx[order], side="right") - 1
        xs, zs = [], []
        for k in np.unique(shard):
            local = idx[order][shard == k] - self.offsets[k]
            xs.append(self.images[k][local])
            zs.append(self.logits[k][local])
        inverse = np.empty_like(order)
        inverse[order] = np.arange(len(order))
        x = torch.from_numpy(np.concatenate(xs)[inverse])
        z = torch.from_numpy(np.concatenate(zs)[inverse])
        return x, z

    def __getitem__(self, i: int):
        x, z = self.__getitems__([i])
        return x[0], z[0]


class Subset(Dataset):
    """A fixed subset that keeps batched fetching."""

    def __init__(self, ds: Dataset, indices: np.ndarray):
        self.ds, self.indices = ds, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitems__(self, idx: list[int]):
        return self.ds.__getitems__(self.indices[np.asarray(idx)].tolist())


def holdout_split(ds: ExtractedDataset, val_size: int, max_samples: int | None = None,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) sample indices: about ``val_size`` samples (at most a fifth) held out for validation, whole
    substitute images at a time so that no snapshot of a validation image is trained on; ``max_samples`` caps train."""
    group = ds.substitute_ids()
    rank = np.empty(group.max() + 1, dtype=np.int64)
    rank[np.random.default_rng(seed).permutation(len(rank))] = np.arange(len(rank))
    order = np.argsort(rank[group], kind="stable")
    per = ds.samples_per_substitute
    n_val = -(-min(val_size, len(ds) // 5) // per) * per
    train = order[n_val:] if max_samples is None else order[n_val:n_val + max_samples]
    return train, order[:n_val]


class ExtractedDataModule(ImageDataModule):
    """DtM data: (x', Z(x')) for training, a held-out slice of the extracted data for validation,
    and the origin test set (labels) for testing. Training never sees origin data. ``on_device``: keep the
    training set in device memory (None: when training on CUDA; :class:`~dfm_lightning.data.origin.DeviceLoader`)."""

    def __init__(self, path: str, origin: str = "mnist", root: str | None = None, download: bool = False,
                 batch_size: int = 128, num_workers: int = 0, val_size: int = 1000, max_samples: int | None = None,
                 augment: bool = False, split_seed: int = 0, on_device: bool | None = None):
        super().__init__()
        self.path, self.origin, self.root, self.download = path, origin, root, download
        self.batch_size, self.num_workers, self.val_size = batch_size, num_workers, val_size
        self.max_samples, self.augment, self.split_seed = max_samples, augment, split_seed
        self.on_device = on_device
        self.train_set = self.val_set = self.test_set = None

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate") and self.train_set is None:
            ds = ExtractedDataset(self.path)
            train, val = holdout_split(ds, self.val_size, self.max_samples, self.split_seed)
            self.train_set, self.val_set = Subset(ds, train), Subset(ds, val)
        if stage in (None, "test") and self.test_set is None:
            self.test_set = ImageDataset(*load_origin(self.origin, False, self.root, self.download))

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader:
        return self.loader(self.val_set, False)

    def test_dataloader(self) -> DataLoader:
        return self.loader(self.test_set, False)
