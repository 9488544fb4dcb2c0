"""Origin datasets as uint8 tensors in memory: MNIST, Fashion-MNIST, CIFAR-10 and the embedded ``digits``.

Pixels reach the model in [0, 1]; normalisation lives in the model. The default root is ``$DFM_DATA_DIR``.
"""
import io
import os
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch import distributed as dist
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset, DistributedSampler, RandomSampler, Subset

from dfm_lightning.errors import UserError

# name -> (channels, size, classes)
DATASET_SPECS = {
    "mnist": (1, 28, 10),
    "fashion_mnist": (1, 28, 10),
    "cifar10": (3, 32, 10),
    "digits": (1, 28, 10),
}
CIFAR10_NPZ = Path("CIFAR10-jpeg") / "cifar10_jpeg_q75.npz"
CLASS_NAMES = {"cifar10": ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"],
               "fashion_mnist": ["T-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
                                 "boot"]}  # the digits' names are the digits


def default_root() -> str:
    """``$DFM_DATA_DIR`` when set, else ``./data``."""
    return os.environ.get("DFM_DATA_DIR") or "data"


def keep_batch(batch):
    """collate_fn for datasets whose ``__getitems__`` already returns a whole batch."""
    return batch


class ImageDataset(Dataset):
    """Images (uint8 or float, NCHW) with targets; ``__getitems__`` fetches a whole batch at once."""

    def __init__(self, images: torch.Tensor, targets: torch.Tensor):
        self.images, self.targets = images, targets

    def __len__(self) -> int:
        return len(self.images)

    def __getitems__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[idx]
        return (x.float() / 255 if x.dtype == torch.uint8 else x), self.targets[idx]

    def __getitem__(self, i: int):
        x, y = self.__getitems__([i])
        return x[0], y[0]


def load_origin(name: str, train: bool, root: str | None = None, download: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Return (uint8 images NCHW, int64 labels) of one split of an origin dataset."""
    if name not in DATASET_SPECS:
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(DATASET_SPECS)}")
    root = root or default_root()
    if name == "digits":
        return _digits(train)
    if name == "cifar10":
        return _cifar10(root, train, download)
    from torchvision import datasets

    cls = {"mnist": datasets.MNIST, "fashion_mnist": datasets.FashionMNIST}[name]
    try:
        ds = cls(root, train=train, download=download)
    except RuntimeError as e:
        raise UserError(f"{cls.__name__} not found in {Path(root, cls.__name__, 'raw')} ({e}); "
                        "set --data.download true, or point DFM_DATA_DIR / root at a copy") from None
    return ds.data.unsqueeze(1).contiguous(), ds.targets.long()


def check_origin(name: str, root: str | None = None, download: bool = True) -> None:
    """Fail now, in one line, if an origin dataset is neither on disk nor allowed to download (before any work)."""
    if name not in DATASET_SPECS:
        raise UserError(f"unknown dataset {name!r}; known: {', '.join(DATASET_SPECS)}")
    root = Path(root or default_root())
    if download or name == "digits":
        return
    found = {"mnist": [root / "MNIST" / "raw" / "t10k-images-idx3-ubyte"],
             "fashion_mnist": [root / "FashionMNIST" / "raw" / "t10k-images-idx3-ubyte"],
             "cifar10": [root / CIFAR10_NPZ, root / "cifar-10-batches-py"]}[name]
    if not any(p.exists() for p in found):
        raise UserError(f"dataset {name!r} not found under {root} (looked for {found[0]}); set data.download true, "
                        "or point DFM_DATA_DIR / data.root at a copy")


def _digits(train: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8x8 digits, upsampled to 28x28; a fixed seeded 80/20 split (no network)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images).float().unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round().to(torch.uint8)
    y = torch.from_numpy(d.target).long()
    perm = torch.from_numpy(np.random.default_rng(0).permutation(len(y)))
    n_train = int(0.8 * len(y))
    idx = perm[:n_train] if train else perm[n_train:]
    return x[idx], y[idx]


def _cifar10(root: str, train: bool, download: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """torchvision's CIFAR-10 pickles, or the offline JPEG copy (``CIFAR10-jpeg/cifar10_jpeg_q75.npz``) under root."""
    npz = Path(root) / CIFAR10_NPZ
    if npz.exists() and not (Path(root) / "cifar-10-batches-py").exists():
        from PIL import Image

        split = "train" if train else "test"
        with np.load(npz, allow_pickle=False) as z:
            blob, offsets, labels = z[f"{split}_jpeg"], z[f"{split}_offsets"], z[f"{split}_labels"]
        x = np.stack([np.asarray(Image.open(io.BytesIO(blob[a:b].tobytes())).convert("RGB"))
                      for a, b in zip(offsets[:-1], offsets[1:])])
        return torch.from_numpy(x).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(labels).long()
    from torchvision import datasets

    try:
        ds = datasets.CIFAR10(root, train=train, download=download)
    except RuntimeError as e:
        raise UserError(f"CIFAR-10 not found in {Path(root, 'cifar-10-batches-py')} nor {npz} ({e}); "
                        "set --data.download true, or point DFM_DATA_DIR / root at a copy") from None
    return torch.from_numpy(ds.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(ds.targets).long()


def random_shift_flip(x: torch.Tensor, pad: int, flip: bool) -> torch.Tensor:
    """Batch augmentation: random translation by up to ``pad`` pixels (zero fill) and optional horizontal flip."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dx, dy = torch.randint(0, 2 * pad + 1, (2, n), device=x.device)
    rows = (torch.arange(h, device=x.device)[None, :] + dy[:, None])[:, None, :, None].expand(-1, x.shape[1], -1, w + 2 * pad)
    out = padded.gather(2, rows)
    cols = (torch.arange(w, device=x.device)[None, :] + dx[:, None])[:, None, None, :].expand(-1, x.shape[1], h, -1)
    out = out.gather(3, cols)
    if flip:
        mask = torch.rand(n, device=x.device) < 0.5
        out[mask] = out[mask].flip(3)
    return out


class ResumableRandomSampler(RandomSampler):
    """torch's RandomSampler (the same seed draw from the global RNG, the same order) that can resume an epoch:
    ``resume(seed, skip)`` replays the interrupted epoch's order from sample ``skip`` on. Being a RandomSampler,
    Lightning still swaps in its distributed sampler under DDP."""

    seed: int | None = None

    def resume(self, seed: int, skip: int) -> None:
        self._resume = (seed, skip)

    def __iter__(self):
        seed, skip = getattr(self, "_resume", None) or (int(torch.empty((), dtype=torch.int64).random_().item()), 0)
        self._resume, self.seed = None, seed
        yield from torch.randperm(len(self.data_source), generator=torch.Generator().manual_seed(seed)).tolist()[skip:]


class EverySampleOnce(DistributedSampler):
    """Rank r of W takes samples r, r + W, r + 2W, ...: every sample exactly once at any world size.

    Lightning's default under DDP, a DistributedSampler, pads every rank to the same length by repeating samples, so
    accuracy would count some test images twice and depend on the number of processes (and its predict sampler
    refuses a rank with nothing to do, e.g. one shard left for two processes). Being a DistributedSampler, this one
    is kept as it is. The world is read when the sampler is used, inside the Trainer's run: the loader may be built
    before the process group exists. Ranks may hold one batch more than others: for loops that synchronise nothing
    per batch (evaluation metrics are synchronised once, at the end; extraction not at all). ``idle``: the index a
    rank with no samples gets once instead (Lightning refuses a rank without batches)."""

    def __init__(self, dataset: Dataset, num_replicas: int | None = None, rank: int | None = None,
                 idle: int | None = None):
        # not DistributedSampler.__init__, which asks the process group for the world at once
        self.dataset, self._world, self.idle = dataset, (num_replicas, rank), idle
        self.shuffle, self.drop_last, self.seed, self.epoch = False, False, 0, 0

    @property
    def num_replicas(self) -> int:
        n = self._world[0]
        return n if n is not None else dist.get_world_size() if _distributed() else 1

    @property
    def rank(self) -> int:
        r = self._world[1]
        return r if r is not None else dist.get_rank() if _distributed() else 0

    def _indices(self) -> range | list[int]:
        mine = range(self.rank, len(self.dataset), self.num_replicas)
        return [self.idle] if len(mine) == 0 and self.idle is not None else mine

    def __len__(self) -> int:
        return len(self._indices())

    def __iter__(self):
        return iter(self._indices())


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


class DeviceLoader:
    """A training loader over a dataset copied once into device memory: every batch is one index into it, so no
    worker processes, no host-to-device copies per batch (augmentation runs batched on the device afterwards,
    :meth:`ImageDataModule.on_after_batch_transfer`). MNIST or CIFAR-10 at 500k samples is a few GB in float32.

    The order is the CPU loader's (a :class:`ResumableRandomSampler`: same seed, same batches, resumable). Under DDP
    rank r of W takes every W-th index of that order, padded by wrapping around so all ranks hold as many batches
    (as Lightning's distributed sampler does); the global RNG, and so the order, is the same on every rank after
    ``seed_everything``."""

    def __init__(self, dataset: Dataset, batch_size: int, device: torch.device | str,
                 num_replicas: int | None = None, rank: int | None = None, chunk: int = 65536):
        self.dataset, self.batch_size, self.device, self.chunk = dataset, batch_size, torch.device(device), chunk
        self.sampler = ResumableRandomSampler(dataset)
        self._world, self._tensors = (num_replicas, rank), None

    def _rank_world(self) -> tuple[int, int]:
        world = self._world[0] or (dist.get_world_size() if _distributed() else 1)
        rank = self._world[1] if self._world[1] is not None else (dist.get_rank() if _distributed() else 0)
        return rank, world

    def _load(self) -> tuple[torch.Tensor, ...]:
        if self._tensors is None:  # in chunks: the host holds one chunk at a time, not a second copy of everything
            parts = [self.dataset.__getitems__(list(range(a, min(a + self.chunk, len(self.dataset)))))
                     for a in range(0, len(self.dataset), self.chunk)]
            self._tensors = tuple(torch.cat([p[k].to(self.device) for p in parts]) for k in range(len(parts[0])))
        return self._tensors

    def _mine(self, order: list[int]) -> list[int]:
        rank, world = self._rank_world()
        if world == 1:
            return order
        per = -(-len(order) // world)
        padded = order + order[: per * world - len(order)]
        return padded[rank::world]

    def __len__(self) -> int:
        _, world = self._rank_world()
        per_rank = -(-len(self.dataset) // world)  # ceil: ranks are padded to the same length
        return -(-per_rank // self.batch_size)

    def __iter__(self):
        tensors = self._load()
        torch.empty((), dtype=torch.int64).random_()  # the draw a DataLoader makes first: the same RNG stream after
        order = torch.tensor(self._mine(list(self.sampler)), dtype=torch.long, device=self.device)
        for a in range(0, len(order), self.batch_size):
            idx = order[a:a + self.batch_size]
            yield tuple(t[idx] for t in tensors)


class ImageDataModule(pl.LightningDataModule):
    """Loaders over batched datasets and the optional training-time shift/flip augmentation, shared by the
    origin and extracted data modules (subclasses set the datasets and the attributes used here)."""

    batch_size: int
    num_workers: int
    augment: bool
    on_device: bool | None = None

    def loader(self, ds: Dataset, shuffle: bool) -> DataLoader | DeviceLoader:
        """A training loader (``shuffle``; Lightning shards it under DDP) or an evaluation loader (every sample
        once, whatever the number of processes). With ``on_device`` (None: when training on CUDA) the training
        set lives in device memory (:class:`DeviceLoader`, the same batches)."""
        device = self.trainer.strategy.root_device if self.trainer is not None else torch.device("cpu")
        if shuffle and (self.on_device if self.on_device is not None else device.type == "cuda"):
            return DeviceLoader(ds, self.batch_size, device)
        # shuffled: the same order as shuffle=True, and resumable
        sampler = ResumableRandomSampler(ds) if shuffle else EverySampleOnce(ds)
        return DataLoader(ds, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
                          collate_fn=keep_batch, persistent_workers=self.num_workers > 0)

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if self.augment and self.trainer is not None and self.trainer.training:
            x, target = batch
            batch = (random_shift_flip(x, pad=2 if x.shape[1] == 1 else 4, flip=x.shape[1] == 3), target)
        return batch


class OriginDataModule(ImageDataModule):
    """An origin dataset for M0 training and for every evaluation.

    ``val_size`` > 0 holds out a seeded slice of the *training* set for validation (tuning never uses the
    test set); with 0 there is no validation loop. ``augment`` adds random shifts (and flips for CIFAR-10).
    ``on_device``: keep the training set in device memory (None: when training on CUDA; :class:`DeviceLoader`).
    """

    def __init__(self, name: str = "mnist", root: str | None = None, download: bool = True, batch_size: int = 128,
                 num_workers: int = 0, val_size: int = 0, augment: bool = False, split_seed: int = 0,
                 on_device: bool | None = None):
        super().__init__()
        self.save_hyperparameters()
        check_origin(name, root, download)  # an unknown or missing dataset fails before a Trainer or W&B run starts
        self.name, self.root, self.download = name, root, download
        self.batch_size, self.num_workers, self.val_size = batch_size, num_workers, val_size
        self.augment, self.split_seed, self.on_device = augment, split_seed, on_device
        self.in_channels, self.input_size, self.num_classes = DATASET_SPECS[name]
        self.train_set = self.val_set = self.test_set = None

    def prepare_data(self) -> None:
        if self.download and self.name in ("mnist", "fashion_mnist", "cifar10"):
            load_origin(self.name, True, self.root, self.download)
            load_origin(self.name, False, self.root, self.download)

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit", "validate") and self.train_set is None:
            x, y = load_origin(self.name, True, self.root, self.download)
            perm = torch.from_numpy(np.random.default_rng(self.split_seed).permutation(len(y)))
            val, tr = perm[: self.val_size], perm[self.val_size:]
            self.train_set, self.val_set = ImageDataset(x[tr], y[tr]), ImageDataset(x[val], y[val])
        if stage in (None, "test", "predict") and self.test_set is None:
            self.test_set = ImageDataset(*load_origin(self.name, False, self.root, self.download))

    def train_dataloader(self) -> DataLoader:
        return self.loader(self.train_set, True)

    def val_dataloader(self) -> DataLoader | list:
        return self.loader(self.val_set, False) if self.val_size > 0 else []

    def test_dataloader(self) -> DataLoader:
        return self.loader(self.test_set, False)


class EvalDataModule(ImageDataModule):
    """The first ``num_samples`` (None: all) test samples of ``source`` - a data module's test set (prepared and set
    up inside the Trainer, so a download stays on one process) or a dataset - each evaluated exactly once at any
    world size."""

    def __init__(self, source: pl.LightningDataModule | Dataset, num_samples: int | None = None,
                 batch_size: int | None = None):
        super().__init__()
        self.source, self.num_samples = source, num_samples
        self.batch_size = batch_size or source.batch_size
        self.num_workers, self.augment = getattr(source, "num_workers", 0), False

    def prepare_data(self) -> None:
        if isinstance(self.source, pl.LightningDataModule):
            self.source.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        if isinstance(self.source, pl.LightningDataModule):
            self.source.setup("test")

    def test_dataloader(self) -> DataLoader:
        ds = self.source.test_set if isinstance(self.source, pl.LightningDataModule) else self.source
        n = len(ds) if self.num_samples is None else min(self.num_samples, len(ds))
        return self.loader(ds if n == len(ds) else Subset(ds, range(n)), shuffle=False)
