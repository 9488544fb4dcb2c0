import numpy as np
import pytest
import torch
from conftest import mnist_root

from dfm_lightning.data import OriginDataModule, SubstituteDataset, load_origin
from dfm_lightning.data.origin import random_shift_flip
from dfm_lightning.errors import UserError
from dfm_lightning.extraction import VirtualLogits


def test_digits_fixed_split():
    xtr, ytr = load_origin("digits", train=True)
    xte, yte = load_origin("digits", train=False)
    assert xtr.shape == (1437, 1, 28, 28) and xte.shape == (360, 1, 28, 28)
    assert xtr.dtype == torch.uint8 and set(ytr.tolist()) == set(range(10))
    assert torch.equal(load_origin("digits", train=False)[0], xte)


def test_datamodule_pixels_in_unit_range_and_holdout_from_train():
    dm = OriginDataModule("digits", batch_size=32, val_size=100)
    dm.setup("fit")
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (32, 1, 28, 28) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert len(dm.train_set) + len(dm.val_set) == 1437 and len(dm.val_set) == 100


def test_missing_dataset_is_one_line_error(tmp_path):
    with pytest.raises(UserError) as e:
        load_origin("mnist", train=False, root=str(tmp_path), download=False)
    assert str(tmp_path) in str(e.value) and "\n" not in str(e.value)


@pytest.mark.skipif(mnist_root() is None, reason="offline MNIST copy not found (set DFM_DATA_DIR)")
def test_offline_mnist_and_fashion_mnist():
    x, y = load_origin("mnist", train=False, root=mnist_root(), download=False)
    assert x.shape == (10000, 1, 28, 28) and torch.bincount(y).tolist()[:3] == [980, 1135, 1032]
    s = SubstituteDataset("fashion_mnist", 70000, 1, 28, seed=0, root=mnist_root())
    assert s[0].shape == (1, 28, 28) and s[65000].shape == (1, 28, 28)


def test_substitute_is_reproducible_and_shaped():
    a = SubstituteDataset("sample_photos", 100, 1, 28, seed=3)
    b = SubstituteDataset("sample_photos", 100, 1, 28, seed=3)
    c = SubstituteDataset("sample_photos", 100, 3, 32, seed=4)
    assert torch.equal(a.images(range(10)), b.images(range(10)))
    assert not torch.equal(a[0], a[1])
    assert c[5].shape == (3, 32, 32) and 0 <= a[7].min() and a[7].max() <= 1
    noise = SubstituteDataset("noise", 10, 3, 32, seed=0)
    assert noise[2].shape == (3, 32, 32)
    digits = SubstituteDataset("digits", 2000, 1, 28, seed=0)  # more samples than the pool: crops
    assert digits[1999].shape == (1, 28, 28)
    for idx in (range(5, 40), range(1400, 1500)):  # the batched pool path, and pool images mixed with crops
        assert torch.equal(digits.images(idx), torch.stack([digits[i] for i in idx]))
    rgb = SubstituteDataset("digits", 50, 3, 28, seed=0).images(range(4))  # grey pool, 3-channel model
    assert rgb.shape == (4, 3, 28, 28) and torch.equal(rgb[:, 1], digits.images(range(4))[:, 0])


def test_substitute_from_array_file(tmp_path):
    np.save(tmp_path / "imgs.npy", np.random.default_rng(0).integers(0, 255, (5, 40, 40, 3), dtype=np.uint8))
    s = SubstituteDataset(str(tmp_path / "imgs.npy"), 20, 1, 28)
    assert s[19].shape == (1, 28, 28)
    with pytest.raises(UserError, match="does not exist"):
        SubstituteDataset(str(tmp_path / "nope.npy"), 20, 1, 28)


def test_virtual_logit_statistics():
    v = VirtualLogits()
    z = v.sample(range(4000), seed=0, num_classes=10)
    top = z.max(dim=1).values
    assert abs(top.mean() - 20) < 0.15 and abs(top.std() - 2) < 0.15
    rest = z.sort(dim=1, descending=True).values[:, 1:]
    expected = torch.linspace(3, -3, 9)
    assert (rest.mean(0) - expected).abs().max() < 0.6  # sorted order statistics sit near the spaced means
    assert torch.bincount(z.argmax(1), minlength=10).min() > 300  # the top class is uniform
    ranks = z.argsort(dim=1)
    assert len({tuple(r.tolist()) for r in ranks[:50]}) == 50  # order varies across samples
    assert torch.equal(v.sample([7, 123], seed=0, num_classes=10), z[[7, 123]])
    assert not torch.equal(v.sample([7], seed=1, num_classes=10), z[[7]])


def test_uniform_classes_are_uniform_and_each_stream_its_own():
    from dfm_lightning.data.draws import BN_CLASS, RANDOM_CLASS, uniform_classes

    c = uniform_classes(0, np.arange(100_000), 10, RANDOM_CLASS)
    assert c.min() == 0 and c.max() == 9 and np.abs(np.bincount(c) / 100_000 - 0.1).max() < 0.005
    assert np.array_equal(uniform_classes(0, [5, 99_999], 10, RANDOM_CLASS), c[[5, 99_999]])  # redrawn alone
    assert (uniform_classes(0, np.arange(100_000), 10, BN_CLASS) == c).mean() < 0.12  # independent of another stream


def test_virtual_logit_means_without_noise():
    z = VirtualLogits(top_std=0, rest_std=0).sample(range(3), seed=0, num_classes=10)
    for row in z:
        assert sorted(row.tolist()) == pytest.approx(sorted([20.0] + torch.linspace(-3, 3, 9).tolist()))


def test_random_shift_flip_keeps_shape_and_content():
    x = torch.rand(8, 3, 32, 32)
    out = random_shift_flip(x, pad=4, flip=True)
    assert out.shape == x.shape
    assert torch.equal(random_shift_flip(x, pad=0, flip=False), x)


def test_batched_crops_are_each_crop_resized_by_torch():
    """A shard's crops equal each crop cut out, flipped and resized alone (F.interpolate, antialiased when shrinking)."""
    from torch.nn import functional as F

    for source, size in (("sample_photos", 32), ("digits", 28)):  # large photos shrink, 8x8 digits grow
        s = SubstituteDataset(source, 10_000, 3 if source == "sample_photos" else 1, size, seed=5)
        idx = np.arange(9_000, 9_040)
        batch = s.images(idx)
        for i, (src, side, top, left, flip) in zip(idx, zip(*s.crop_params(idx))):
            crop = s.pool[src, :, top:top + side, left:left + side].float() / 255
            crop = crop.flip(2) if flip else crop
            want = F.interpolate(crop[None], size=(size, size), mode="bilinear", antialias=bool(side > size),
                                 align_corners=False)[0].clamp(0, 1)
            assert torch.allclose(batch[i - 9_000], s._to_channels(want[None])[0], atol=1e-6), (source, i)


def test_substitute_crops_are_a_function_of_seed_and_index():
    s = SubstituteDataset("sample_photos", 10_000, 3, 32, seed=1)  # two large photos: every image a crop
    batch = s.images([7, 9_999, 3, 7])
    assert torch.equal(batch[0], batch[3]) and torch.equal(batch[1], s[9_999]) and not torch.equal(batch[0], batch[2])
    assert not torch.equal(batch[0], SubstituteDataset("sample_photos", 10, 3, 32, seed=2)[7])
    assert batch.shape == (4, 3, 32, 32) and batch.min() >= 0 and batch.max() <= 1
    from dfm_lightning.data.draws import hashed_uniforms

    u = hashed_uniforms(0, np.arange(100_000), 5)  # the draws behind crop size, position and flip
    assert 0 <= u.min() and u.max() < 1 and np.abs(u.mean(0) - 0.5).max() < 0.01
    assert np.abs(np.corrcoef(u.T) - np.eye(5)).max() < 0.02
