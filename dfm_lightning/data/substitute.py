"""Substitute (background) images for DfM: the only data extraction ever sees.

Sources: another origin dataset (``fashion_mnist`` for MNIST), the offline MS-COCO set (``coco``),
scikit-learn's bundled photos (``sample_photos``, the embedded default), uniform ``noise``, or a path to
an .npy/.npz array or a folder of images. Each image is converted to the target (channels, size) on the
fly; image i depends only on (seed, i), so any shard can be regenerated and the number of extracted
images may exceed the pool (extra images are random crops / flips).
"""
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from dfm_lightning.data.origin import DATASET_SPECS, default_root, load_origin
from dfm_lightning.errors import UserError

COCO_NPZ = Path("coco-substitute") / "coco128_substitute_64.npz"
SOURCES = ("fashion_mnist", "mnist", "cifar10", "digits", "coco", "sample_photos", "noise", "<path>")


def load_pool(source: str, root: str | None = None) -> torch.Tensor | None:
    """Load a substitute pool as uint8 NCHW (None for ``noise``)."""
    root = root or default_root()
    if source == "noise":
        return None
    if source in DATASET_SPECS:
        return load_origin(source, train=True, root=root, download=True)[0]
    if source == "sample_photos":
        from sklearn.datasets import load_sample_images

        return torch.from_numpy(np.stack(load_sample_images().images)).permute(0, 3, 1, 2).contiguous()
    check_source(source, root)
    path = Path(root) / COCO_NPZ if source == "coco" else Path(source)
    if path.is_dir():
        from PIL import Image

        files = sorted(p for p in path.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
        if not files:
            raise UserError(f"substitute folder {path} holds no .png/.jpg images")
        side = min(min(Image.open(f).size) for f in files)
        arrays = [np.asarray(Image.open(f).convert("RGB").resize((side, side))) for f in files]
        return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).contiguous()
    try:  # allow_pickle=False: a pickled array is refused, never unpickled
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                arrays = [z[k] for k in z.files if z[k].dtype == np.uint8 and z[k].ndim == 4]
            if not arrays:
                raise UserError(f"{path} holds no uint8 image array (N, H, W, C)")
            x = np.concatenate(arrays)
        else:
            x = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as e:
        raise UserError(f"substitute file {path} is not a plain image array ({e}); pass uint8 images (N, H, W, C) "
                        "as .npy/.npz") from None
    if x.dtype != np.uint8 or x.ndim != 4:
        raise UserError(f"substitute file {path} holds {x.dtype} of shape {x.shape}; pass uint8 images (N, H, W, C)")
    x = torch.from_numpy(x)
    return x.permute(0, 3, 1, 2).contiguous() if x.shape[-1] in (1, 3) else x


def check_source(source: str, root: str | None = None) -> None:
    """Fail now, in one line, if a substitute source cannot be found (before any work is done)."""
    if source in ("noise", "sample_photos") or source in DATASET_SPECS:
        return  # built in, or an origin dataset (checked, and downloaded if allowed, when it loads)
    path = Path(root or default_root()) / COCO_NPZ if source == "coco" else Path(source)
    if not path.exists():
        raise UserError(f"substitute source {source!r}: {path} does not exist; use one of {', '.join(SOURCES)}")


class SubstituteDataset(Dataset):
    """``num_samples`` substitute images of shape (channels, size, size) in [0, 1]; image i is a pure function of (seed, i).

    The first ``len(pool)`` indices are the pool's own images (in a seeded order) when they already have the
    target size; all others are random crops (side ``min_crop``..1 of the shorter side) with random flips.
    ``min_crop`` None: 0.7 for pools already at the target size (mild zooms), 0.15 for larger photos.
    """

    def __init__(self, source: str, num_samples: int, channels: int, size: int, seed: int = 0,
                 root: str | None = None, min_crop: float | None = None):
        self.source, self.num_samples, self.channels, self.size = source, num_samples, channels, size
        self.seed = seed
        self.pool = load_pool(source, root)
        n = 0 if self.pool is None else len(self.pool)
        self.order = np.random.default_rng(seed).permutation(n)
        self.exact = self.pool is not None and tuple(self.pool.shape[2:]) == (size, size)
        self.min_crop = min_crop if min_crop is not None else (0.7 if self.exact else 0.15)

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int) -> torch.Tensor:
        if self.exact and i < len(self.pool):
            return self._to_channels(self.pool[int(self.order[i])].float() / 255)
        rng = np.random.default_rng([self.seed, i, 0])
        if self.pool is None:
            return torch.from_numpy(rng.random((self.channels, self.size, self.size), dtype=np.float32))
        return self._to_channels(self._random_crop(self.pool[int(rng.integers(len(self.pool)))].float() / 255, rng))

    def images(self, indices: list[int] | range) -> torch.Tensor:
        """A batch of substitute images for the given indices (pool images in one gather, crops one by one)."""
        idx = np.asarray(list(indices), dtype=np.int64)
        if self.exact and len(idx) and idx.max() < len(self.pool):
            batch = self.pool[torch.from_numpy(self.order[idx])].float() / 255
            return batch if batch.shape[1] == self.channels else torch.stack([self._to_channels(im) for im in batch])
        return torch.stack([self[int(i)] for i in idx])

    def _random_crop(self, img: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        _, h, w = img.shape
        side = max(1, int(round(min(h, w) * rng.uniform(self.min_crop, 1.0))))
        y0, x0 = int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1))
        crop = img[:, y0:y0 + side, x0:x0 + side]
        if rng.random() < 0.5:
            crop = crop.flip(2)
        out = F.interpolate(crop[None], size=(self.size, self.size), mode="bilinear", antialias=side > self.size,
                            align_corners=False)[0]
        return out.clamp(0, 1)

    def _to_channels(self, img: torch.Tensor) -> torch.Tensor:
        if img.shape[0] == self.channels:
            return img
        if self.channels == 1:
            return (0.299 * img[0] + 0.587 * img[1] + 0.114 * img[2])[None]
        return img.expand(self.channels, -1, -1).clone()
