"""Substitute (background) images for DfM: the only data extraction ever sees.

Sources: another origin dataset (``fashion_mnist`` for MNIST), the offline MS-COCO set (``coco``),
scikit-learn's bundled photos (``sample_photos``, the embedded default), uniform ``noise``, or a path to
an .npy/.npz array or a folder of images. Each image is converted to the target (channels, size) a batch
at a time; image i depends only on (seed, i), so any shard can be regenerated and the number of extracted
images may exceed the pool (extra images are random crops / flips).
"""
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F
from torch.utils.data import Dataset

from dfm_lightning.data.draws import hashed_uniforms
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
    target size; all others are random crops (side ``min_crop``..1 of the shorter side) with random flips, made a
    whole batch at a time (a gather and a resize per crop side, on ``device`` if given: a pool kept in GPU memory).
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
        self._pools: dict[torch.device, torch.Tensor] = {}

    def __len__(self) -> int:
        return self.num_samples

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.images([i])[0]

    def images(self, indices: list[int] | range, device: torch.device | str | None = None) -> torch.Tensor:
        """A batch of substitute images for the given indices (on ``device``; default the CPU)."""
        idx = np.asarray(list(indices), dtype=np.int64)
        device = torch.device(device or "cpu")
        if self.pool is None:
            return torch.stack([torch.from_numpy(np.random.default_rng([self.seed, int(i), 0]).random(
                (self.channels, self.size, self.size), dtype=np.float32)) for i in idx]).to(device)
        pool = self._pools.get(device)
        if pool is None:
            pool = self._pools[device] = self.pool.to(device)
        own = (idx < len(pool)) if self.exact else np.zeros(len(idx), dtype=bool)
        if own.all():  # a shard of pool images (a 50k MNIST generation): one gather
            return self._to_channels(pool[torch.from_numpy(self.order[idx]).to(device)].float() / 255)
        out = torch.empty(len(idx), pool.shape[1], self.size, self.size, device=device)
        if own.any():
            out[torch.from_numpy(own).to(device)] = pool[torch.from_numpy(self.order[idx[own]]).to(device)].float() / 255
        if (~own).any():
            out[torch.from_numpy(~own).to(device)] = self._crops(pool, idx[~own])
        return self._to_channels(out)

    def crop_params(self, idx: np.ndarray) -> tuple[torch.Tensor, ...]:
        """Per index: (pool image, crop side, top, left, flip): side ``min_crop``..1 of the shorter side, a uniform
        position, flipped half the time; each a pure function of (seed, index)."""
        _, _, h, w = self.pool.shape
        u = torch.from_numpy(hashed_uniforms(self.seed, idx, 5))
        src = (u[:, 0] * len(self.pool)).long().clamp(max=len(self.pool) - 1)
        side = (min(h, w) * (self.min_crop + (1 - self.min_crop) * u[:, 1])).round().long().clamp(1, min(h, w))
        return src, side, (u[:, 2] * (h - side + 1)).long(), (u[:, 3] * (w - side + 1)).long(), u[:, 4] < 0.5

    def _crops(self, pool: torch.Tensor, idx: np.ndarray) -> torch.Tensor:
        """The crops of ``idx``, resized: one gather and one ``F.interpolate`` per crop side (bilinear, antialiased
        when shrinking), whatever the number of images."""
        src, side, top, left, flip = (t.to(pool.device) for t in self.crop_params(idx))
        out = torch.empty(len(idx), pool.shape[1], self.size, self.size, device=pool.device)
        for s in torch.unique(side).tolist():
            group = (side == s).nonzero().squeeze(1)
            for chunk in group.split(max(1, 2**24 // (pool.shape[1] * s * s))):  # ~64 MiB of crop pixels at a time
                # slicing views and stacking them: far cheaper than one advanced-indexing gather of every pixel
                where = zip(src[chunk].tolist(), top[chunk].tolist(), left[chunk].tolist())
                crop = torch.stack([pool[i, :, t:t + s, l:l + s] for i, t, l in where]).float() / 255
                img = F.interpolate(crop, size=(self.size, self.size), mode="bilinear", antialias=s > self.size,
                                    align_corners=False)
                out[chunk] = torch.where(flip[chunk, None, None, None], img.flip(3), img)
        return out.clamp(0, 1)

    def _to_channels(self, batch: torch.Tensor) -> torch.Tensor:
        if batch.shape[1] == self.channels:
            return batch
        if self.channels == 1:
            return (0.299 * batch[:, 0] + 0.587 * batch[:, 1] + 0.114 * batch[:, 2])[:, None]
        return batch.expand(-1, self.channels, -1, -1).contiguous()
