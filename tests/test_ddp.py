"""DDP (gloo, 2 CPU processes) as a subprocess: strategy='ddp' re-runs the command line, so never inside pytest."""
from conftest import run_dfm


def test_ddp_extraction_shards_across_ranks_and_matches_single_process(tiny_chain, tmp_path):
    args = ["extract", "--ckpt_path", str(tiny_chain / "gen0" / "model.ckpt"), "--extraction.substitute", "noise",
            "--extraction.num_samples", "500", "--extraction.shard_size", "100", "--extraction.steps", "5"]
    ddp = run_dfm(*args, "--out_dir", "ddp", "--trainer",
                  "{accelerator: cpu, devices: 2, strategy: ddp, enable_progress_bar: false}", cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = run_dfm(*args, "--out_dir", "one", "--trainer", "{accelerator: cpu, devices: 1, enable_progress_bar: false}",
                     cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    shards = sorted(p.name for p in (tmp_path / "one").glob("shard-*.npy"))
    assert len(shards) == 10 and shards == sorted(p.name for p in (tmp_path / "ddp").glob("shard-*.npy"))
    for name in shards:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "ddp" / name).read_bytes()
    assert ddp.stdout.count("[extract]") == 1  # reported once, by rank 0
