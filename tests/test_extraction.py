import json
from pathlib import Path

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from dfm_lightning.data import ExtractedDataset
from dfm_lightning.data.extracted import holdout_split
from dfm_lightning.errors import UserError
from dfm_lightning.extraction import ExtractionConfig, VirtualLogits, extract
from dfm_lightning.extraction.virtual_logits import logit_distance
from dfm_lightning.models import create_model

CPU = {"accelerator": "cpu", "devices": 1, "enable_progress_bar": False}
CONFIG = ExtractionConfig(substitute="sample_photos", num_samples=250, steps=10, step_size=0.2, shard_size=100)


_STATE = {}


def model():
    """A LeNet briefly trained on digits (an untrained one barely reacts to its input), same weights every call."""
    if not _STATE:
        from dfm_lightning.data import load_origin

        torch.manual_seed(0)
        net = create_model("lenet")
        x, y = load_origin("digits", train=True)
        opt = torch.optim.Adam(net.parameters(), lr=3e-3)
        for _ in range(3):
            for i in range(0, len(y), 64):
                loss = torch.nn.functional.cross_entropy(net(x[i:i + 64].float() / 255), y[i:i + 64])
                opt.zero_grad()
                loss.backward()
                opt.step()
        _STATE.update(net.state_dict())
    net = create_model("lenet")
    net.load_state_dict(_STATE)
    return net.eval()


def run(out: Path, config: ExtractionConfig = CONFIG, **kw) -> ExtractedDataset:
    return extract(model(), out, config, seed=0, trainer_kwargs={**CPU, **kw}, input_shape=(1, 28))


def test_extraction_lowers_distance_and_stores_own_logits(tmp_path):
    ds = run(tmp_path / "d")
    assert len(ds) == 250 and ds.manifest["num_samples"] == 250 and len(ds.manifest["shards"]) == 3
    assert ds.manifest["image_shape"] == [1, 28, 28] and ds.manifest["dtypes"]["images"] == "float32"
    x, z = ds.__getitems__(list(range(250)))
    m = model()
    with torch.no_grad():
        assert torch.allclose(m(x), z, atol=1e-4)  # the stored target is Z(x'), not Z_v
        from dfm_lightning.data import SubstituteDataset

        xs = SubstituteDataset("sample_photos", 250, 1, 28, seed=0).images(range(250))
        zv = VirtualLogits().sample(range(250), seed=0, num_classes=10)
        before, after = logit_distance(m(xs), zv), logit_distance(z, zv)
    assert after.mean() < 0.9 * before.mean() and (after < before).float().mean() > 0.95
    assert 0 <= x.min() and x.max() <= 1


class Interrupt(pl.Callback):
    def on_predict_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0):
        if batch_idx == 1:
            raise KeyboardInterrupt


def test_resume_after_interruption_is_byte_identical(tmp_path):
    full = run(tmp_path / "full")
    with pytest.raises((KeyboardInterrupt, SystemExit)):
        run(tmp_path / "resumed", callbacks=[Interrupt()])
    assert not (tmp_path / "resumed" / "manifest.json").exists()
    assert 1 <= len(list((tmp_path / "resumed").glob("shard-*.json"))) < 3
    resumed = run(tmp_path / "resumed")
    def without_timing(shards):  # the metrics' seconds are wall time; everything else must match
        return [{**s, "metrics": {k: v for k, v in s["metrics"].items() if k != "seconds"}} for s in shards]

    assert without_timing(resumed.manifest["shards"]) == without_timing(full.manifest["shards"])
    for f in sorted((tmp_path / "full").glob("shard-*.npy")):
        assert f.read_bytes() == (tmp_path / "resumed" / f.name).read_bytes()


def test_other_config_is_refused_not_overwritten(tmp_path):
    run(tmp_path / "d")
    before = (tmp_path / "d" / "manifest.json").read_bytes()
    with pytest.raises(UserError, match="another config"):
        run(tmp_path / "d", config=ExtractionConfig(**{**CONFIG.__dict__, "steps": 5}))
    assert (tmp_path / "d" / "manifest.json").read_bytes() == before


@pytest.mark.parametrize("damage", ["flip", "truncate", "delete"])
def test_damaged_shard_is_named(tmp_path, damage):
    run(tmp_path / "d")
    f = tmp_path / "d" / "shard-00001.images.npy"
    data = bytearray(f.read_bytes())
    if damage == "flip":
        data[-5] ^= 0xFF
        f.write_bytes(bytes(data))
    elif damage == "truncate":
        f.write_bytes(bytes(data[:-100]))
    else:
        f.unlink()
    with pytest.raises(UserError) as e:
        ExtractedDataset(tmp_path / "d")
    assert "shard-00001.images.npy" in str(e.value) and "\n" not in str(e.value)


def test_manifest_records_sources_and_hashes(tmp_path):
    ds = extract(model(), tmp_path / "d", CONFIG, seed=5, source_sha256="abc", trainer_kwargs=CPU, input_shape=(1, 28))
    m = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert m["seed"] == 5 and m["source_checkpoint_sha256"] == "abc" and m["config"]["steps"] == 10
    assert all(len(s["images"]["sha256"]) == 64 for s in m["shards"])
    assert np.load(tmp_path / "d" / "shard-00002.logits.npy").shape == (50, 10)
    assert len(ds) == 250


def test_snapshot_steps_store_trajectory_points(tmp_path):
    plain = run(tmp_path / "plain")
    snap = run(tmp_path / "snap", config=ExtractionConfig(**{**CONFIG.__dict__, "snapshot_steps": [5, 0]}))
    assert len(snap) == 3 * 250 and snap.manifest["config"]["snapshot_steps"] == [5, 0]
    finals = snap.final_indices()
    assert finals.tolist() == [*range(0, 100), *range(300, 400), *range(600, 650)]
    x, z = snap.__getitems__(finals.tolist())
    x0, z0 = plain.__getitems__(list(range(250)))
    assert torch.allclose(x, x0, atol=1e-5) and torch.allclose(z, z0, atol=1e-3)  # same final iterates
    xs, _ = snap.__getitems__(list(range(100, 200)))  # shard 0's step-0 block: the substitute images themselves
    from dfm_lightning.data import SubstituteDataset

    assert torch.equal(xs, SubstituteDataset("sample_photos", 250, 1, 28, seed=0).images(range(100)))
    with torch.no_grad():
        assert torch.allclose(model()(xs), snap.__getitems__(list(range(100, 200)))[1], atol=1e-4)
    assert plain.final_indices().tolist() == list(range(250))
    record = tmp_path / "plain" / "config.json"  # as written before the option existed: it still resumes
    old = json.loads(record.read_text())
    del old["config"]["snapshot_steps"]
    record.write_text(json.dumps(old))
    assert len(run(tmp_path / "plain")) == 250


def test_holdout_split_keeps_a_substitutes_snapshots_together(tmp_path):
    plain = run(tmp_path / "plain")
    train, val = holdout_split(plain, val_size=30, seed=3)  # no snapshots: the plain permutation, as before
    assert np.array_equal(np.concatenate([val, train]), np.random.default_rng(3).permutation(250))
    snap = run(tmp_path / "snap", config=ExtractionConfig(**{**CONFIG.__dict__, "snapshot_steps": [5]}))
    assert snap.substitute_ids()[[0, 100, 199, 200, 300, 399, 400, 450, 499]].tolist() == [0, 0, 99, 100, 100, 199, 200, 200, 249]
    train, val = holdout_split(snap, val_size=31, seed=3)
    assert len(val) == 32 and len(train) == 500 - 32
    ids = snap.substitute_ids()
    assert not set(ids[val]) & set(ids[train]) and len(set(ids[val])) == 16
    assert len(holdout_split(snap, val_size=31, max_samples=100, seed=3)[0]) == 100


def test_snapshot_steps_beyond_steps_are_refused(tmp_path):
    with pytest.raises(UserError, match="snapshot_steps"):
        run(tmp_path / "d", config=ExtractionConfig(**{**CONFIG.__dict__, "snapshot_steps": [10]}))
