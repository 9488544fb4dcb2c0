"""Several processes (gloo on CPU), each run as a subprocess: strategy='ddp' re-runs the command line, so never
inside pytest. The cluster scripts of docs/CLUSTER.md run here with SLURM simulated (tests/fake_slurm) and torchrun
on localhost."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, TINY_CHAIN, dfm_in_process, run_dfm
from wandb_records import logged

from dfm_lightning.data.origin import EverySampleOnce

# the tiny chain's science without its one-device trainer: the launch scripts set devices and nodes
assert TINY_CHAIN[0] == "--trainer"
TINY = [*TINY_CHAIN[2:], "--trainer.max_epochs", "8", "--trainer.enable_progress_bar", "false"]
PATH = f"{REPO / 'tests' / 'fake_slurm'}:{Path(sys.executable).parent}:{os.environ['PATH']}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("n", [1, 7, 101, 360])
def test_every_sample_evaluated_exactly_once_at_any_world_size(n):
    for world in (1, 2, 3, 4):
        seen = [i for rank in range(world) for i in EverySampleOnce(range(n), num_replicas=world, rank=rank)]
        assert sorted(seen) == list(range(n))  # DistributedSampler would pad to a multiple of world
        assert sum(len(EverySampleOnce(range(n), num_replicas=world, rank=r)) for r in range(world)) == n
    assert list(EverySampleOnce(range(2), num_replicas=3, rank=2, idle=-1)) == [-1]  # a rank with nothing to do


def test_robustness_is_identical_for_1_2_and_3_processes(tiny_chain, tmp_path):
    # 101 images: not divisible by 2 or 3, so padding would count some twice (and shift the figures)
    tables = []
    for devices in (1, 2, 3):
        run = dfm_in_process if devices == 1 else run_dfm  # (one process needs no interpreter of its own)
        proc = run("robustness", "--config", str(REPO / "configs" / "fit" / "digits_lenet.yaml"),
                   "--ckpt_path", str(tiny_chain / "gen0" / "model.ckpt"), "--protocol.eps", "[0, 1]",
                   "--protocol.steps", "3", "--protocol.num_test_images", "101", "--trainer.logger", "false",
                   "--trainer", f"{{accelerator: cpu, devices: {devices}, strategy: {'ddp' if devices > 1 else 'auto'}, "
                   "enable_progress_bar: false}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        table = proc.stdout[proc.stdout.index("| model"):].strip()
        assert table.endswith("(101 test images, 3 PGD steps)") and proc.stdout.count("| model |") == 1  # rank 0 only
        tables.append(table)
    assert tables[0] == tables[1] == tables[2]


def test_ddp_extraction_shards_across_ranks_and_matches_single_process(tiny_chain, tmp_path):
    args = ["extract", "--ckpt_path", str(tiny_chain / "gen0" / "model.ckpt"), "--extraction.substitute", "noise",
            "--extraction.num_samples", "500", "--extraction.shard_size", "100", "--extraction.steps", "5"]
    ddp = run_dfm(*args, "--out_dir", "ddp", "--trainer",
                  "{accelerator: cpu, devices: 2, strategy: ddp, enable_progress_bar: false}", cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    for f in [tmp_path / "ddp" / "manifest.json", *(tmp_path / "ddp").glob("shard-00007.*")]:
        f.unlink()  # one shard left for two processes: one of them has nothing to do
    ddp = run_dfm(*args, "--out_dir", "ddp", "--trainer",
                  "{accelerator: cpu, devices: 2, strategy: ddp, enable_progress_bar: false}", cwd=tmp_path)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = dfm_in_process(*args, "--out_dir", "one", "--trainer",
                            "{accelerator: cpu, devices: 1, enable_progress_bar: false}", cwd=tmp_path)
    assert single.returncode == 0, single.stderr[-3000:]
    shards = sorted(p.name for p in (tmp_path / "one").glob("shard-*.npy"))
    assert len(shards) == 10 and shards == sorted(p.name for p in (tmp_path / "ddp").glob("shard-*.npy"))
    for name in shards:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "ddp" / name).read_bytes()
    assert ddp.stdout.count("[extract]") == 1  # reported once, by rank 0


def _wait_for(path_glob: Path, proc: subprocess.Popen, timeout: float = 300) -> bool:
    """True once a file matching ``path_glob`` exists; False if ``proc`` ended first."""
    end = time.time() + timeout
    while time.time() < end:
        if next(path_glob.parent.glob(path_glob.name), None) is not None:
            return True
        if proc.poll() is not None:
            return False
        time.sleep(0.05)
    raise TimeoutError(path_glob)


def test_sbatch_script_runs_the_chain_under_ddp_through_sigterm_requeue_and_sigkill(tmp_path):
    """docs/cluster/chain.sbatch on one simulated node with 2 tasks: SLURM's SIGTERM before the time limit stops the
    chain gracefully and the script requeues it; a SIGKILL later loses nothing either; the resumed chain's D1 is
    byte-identical to a 1-process extraction from the same M0, and M0's evaluation identical to 1 process's."""
    log = tmp_path / "slurm.log"
    env = {**os.environ, "PATH": PATH, "SLURM_JOB_ID": "4242", "SLURM_JOB_NAME": "dfm-chain", "SLURM_NTASKS": "2",
           "SLURM_NTASKS_PER_NODE": "2", "SLURM_JOB_NUM_NODES": "1", "SLURM_NNODES": "1", "SLURM_NODELIST": "localhost",
           "SLURM_JOB_NODELIST": "localhost", "MASTER_PORT": str(free_port()), "ACCELERATOR": "cpu",
           "FAKE_SLURM_LOG": str(log), "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    cmd = ["bash", str(REPO / "docs" / "cluster" / "chain.sbatch"), "--run_dir", "run", *TINY, "--generations", "1",
           "--checkpoint_every_s", "0"]  # a resumable last.ckpt after every batch: the SIGKILL below finds one
    run, data = tmp_path / "run", tmp_path / "run" / "gen1" / "data"

    def start() -> subprocess.Popen:  # output to a file: a full pipe would block the job
        return subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=open(tmp_path / "job.out", "w"),
                                stderr=subprocess.STDOUT, start_new_session=True)

    def output(job: subprocess.Popen, timeout: float) -> str:
        try:
            job.wait(timeout=timeout)
        finally:
            if job.poll() is None:
                os.killpg(job.pid, signal.SIGKILL)
        return (tmp_path / "job.out").read_text()

    job = start()  # 1: SIGTERM to the tasks (SLURM's --signal) once D1's first shard is written
    assert _wait_for(data / "shard-*.json", job), output(job, 0)[-3000:]
    srun_pid = int(log.read_text().split("srun pid ")[-1].split()[0])
    os.kill(srun_pid, signal.SIGTERM)
    out = output(job, 240)
    assert job.returncode == 143, out[-3000:]
    assert "scontrol requeue 4242" in log.read_text() and "rerun the same command" in out
    assert not (data / "manifest.json").exists()

    job = start()  # 2: the requeued job; SIGKILL of everything while M1 trains
    assert _wait_for(run / "gen1" / "checkpoints" / "last.ckpt", job), output(job, 0)[-3000:]
    os.killpg(job.pid, signal.SIGKILL)
    job.wait(timeout=60)

    job = start()  # 3: completes
    out = output(job, 300)
    assert job.returncode == 0, out[-3000:]
    assert log.read_text().count("requeue") == 1
    rows = json.loads((run / "results.json").read_text())["generations"]
    assert [r["generation"] for r in rows] == [0, 1] and all(r["robust_num_images"] == 128 for r in rows)
    wandb_runs = [logged(p) for p in sorted((run / "wandb").glob("offline-run-*"))]
    gen0 = [h for h, info in wandb_runs if info.get("job_type") == "gen0"]  # (a SIGKILLed run may hold no record)
    assert len(gen0) == 1 and gen0[0]["chain/test_acc"] == rows[0]["test_accuracy"]  # one run per generation, rank 0's

    # the same M0 in one process: the same D1 and the same evaluation of M0
    one = run_dfm("chain", "--run_dir", "one", *TINY_CHAIN, "--m0_ckpt_path", str(run / "gen0" / "model.ckpt"),
                  "--generations", "1", "--distill_epochs", "1", "--wandb.enabled", "false", cwd=tmp_path,
                  env={"OMP_NUM_THREADS": "1"})
    assert one.returncode == 0, one.stderr[-3000:]
    one_row = json.loads((tmp_path / "one" / "gen0" / "eval.json").read_text())
    for key in ("test_accuracy", "robust_accuracy", "robust_num_images"):
        assert one_row[key] == rows[0][key]
    shards = sorted(p.name for p in (tmp_path / "one" / "gen1" / "data").glob("shard-*.npy"))
    assert len(shards) == 6 and shards == sorted(p.name for p in data.glob("shard-*.npy"))
    for name in shards:
        assert (data / name).read_bytes() == (tmp_path / "one" / "gen1" / "data" / name).read_bytes()


def _torchrun_node(node_rank: int, cwd: Path, port: int, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PATH": PATH, "NNODES": "2", "NODE_RANK": str(node_rank), "MASTER_ADDR": "127.0.0.1",
           "MASTER_PORT": str(port), "GPUS": "1", "ACCELERATOR": "cpu", "OMP_NUM_THREADS": "1"}
    out = cwd / f"node{node_rank}.out"  # a file, not a pipe: a full pipe would block one node and hang the other
    return subprocess.Popen(["bash", str(REPO / "docs" / "cluster" / "torchrun.sh"), *args], cwd=cwd, env=env,
                            stdout=open(out, "w"), stderr=subprocess.STDOUT)


def _outputs(nodes: list[subprocess.Popen], cwds: list[Path]) -> list[str]:
    try:
        for n in nodes:
            n.wait(timeout=300)
    finally:
        for n in nodes:
            n.kill() if n.poll() is None else None
    return [(cwd / f"node{rank}.out").read_text() for rank, cwd in enumerate(cwds)]


def test_two_simulated_nodes_need_a_shared_run_dir(tiny_chain, tmp_path):
    """docs/cluster/torchrun.sh as two nodes of one process each. A relative --run_dir from two working directories
    is what two nodes without a shared filesystem see: refused in one line. From one directory the chain runs."""
    args = ["--run_dir", "run", *TINY, "--m0_ckpt_path", str(tiny_chain / "gen0" / "model.ckpt"), "--generations", "1",
            "--extraction.num_samples", "400", "--extraction.shard_size", "100", "--extraction.steps", "5",
            "--distill_epochs", "1", "--wandb.enabled", "false"]
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    port = free_port()
    cwds = [tmp_path / "a", tmp_path / "b"]
    nodes = [_torchrun_node(rank, cwd, port, *args) for rank, cwd in enumerate(cwds)]
    outs = _outputs(nodes, cwds)
    assert all(n.returncode != 0 for n in nodes), outs[0][-3000:]
    line = "run_dir must be on a filesystem shared by all nodes"
    assert all(line in out for out in outs), outs[1][-3000:]
    assert "does not see a file rank 0 wrote" in outs[1]  # the node that cannot see rank 0's file says so
    assert not (tmp_path / "b" / "run" / "gen1").exists()  # no work was done

    port = free_port()
    nodes = [_torchrun_node(rank, tmp_path, port, *args) for rank in (0, 1)]
    outs = _outputs(nodes, [tmp_path, tmp_path])
    assert all(n.returncode == 0 for n in nodes), outs[0][-3000:] + outs[1][-3000:]
    data = tmp_path / "run" / "gen1" / "data"
    assert len(list(data.glob("shard-*.json"))) == 4 and (data / "manifest.json").exists()
    assert json.loads((tmp_path / "run" / "results.json").read_text())["generations"][1]["generation"] == 1
