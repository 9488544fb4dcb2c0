"""Kill-and-resume trials: SIGKILL a small chain at random moments, rerun it after every kill, and check the finished
run dir against an uninterrupted run of the same command: every shard byte-identical (sha256), every checkpoint
loadable, no extracted sample lost or duplicated, the same results.

    python bench/kill_trials.py --kills 50 [--seed 0] [--out runs/kill_trials]

Every run is forked from this process, which has imported the package but run no torch operation (so forking is
safe), so a trial costs its own work rather than Lightning's import. Prints one JSON line; exit 1 on any mismatch.
"""
import argparse
import hashlib
import json
import os
import random
import shutil
import time
from pathlib import Path

CHAIN = ["--generations", "2", "--seed_everything", "0", "--data.name", "digits", "--data.batch_size", "64",
         "--model.arch", "lenet", "--model.lr", "0.003", "--trainer.max_epochs", "4", "--trainer.accelerator", "cpu",
         "--trainer.devices", "1", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
         "--extraction.substitute", "sample_photos", "--extraction.num_samples", "600", "--extraction.shard_size", "100",
         "--extraction.steps", "10", "--extraction.step_size", "0.15", "--distill_epochs", "3", "--distill.lr", "0.003",
         "--distill_data.batch_size", "64", "--distill_data.val_size", "100", "--robustness.eps", "[0, 1]",
         "--robustness.steps", "3", "--robustness.num_test_images", "128", "--wandb.enabled", "false",
         "--checkpoint_every_s", "0.3"]


def fork_chain(run_dir: Path, log: Path) -> int:
    """Start `dfm chain` into run_dir in a forked child; return its pid."""
    pid = os.fork()
    if pid:
        return pid
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    code = 1
    try:
        from dfm_lightning.cli import main

        main(["chain", "--run_dir", str(run_dir), *CHAIN])
        code = 0
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    finally:
        os._exit(code)


def wait(pid: int) -> int:
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])


def fingerprint(run: Path) -> dict:
    """What must match: shard hashes, per-dataset sample counts, results, loadable checkpoints."""
    from dfm_lightning.data import ExtractedDataset
    from dfm_lightning.modules import load_module

    shards = {str(p.relative_to(run)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.rglob("shard-*.npy"))}
    counts = {str(d.relative_to(run)): len(ExtractedDataset(d)) for d in sorted(run.glob("gen*/data"))}
    for ckpt in sorted(run.glob("gen*/model.ckpt")):
        load_module(ckpt)
    gens = json.loads((run / "results.json").read_text())["generations"]
    return {"shards": shards, "counts": counts,
            "results": [(g["test_accuracy"], g["robust_accuracy"], g["num_train_samples"]) for g in gens]}


def fingerprint_in_child(run: Path) -> dict:
    """fingerprint() in a forked child: this process must never run a torch operation itself, or later forks
    could inherit a half-initialised thread pool and hang."""
    result = run.with_name(run.name + ".fingerprint.json")
    pid = os.fork()
    if not pid:
        try:
            result.write_text(json.dumps(fingerprint(run)))
        finally:
            os._exit(0)
    wait(pid)
    return json.loads(result.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kills", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/kill_trials")
    a = p.parse_args()
    import dfm_lightning.commands  # noqa: F401  (the import every child inherits)

    out = Path(a.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    t0 = time.time()
    assert wait(fork_chain(out / "reference", out / "reference.log")) == 0, (out / "reference.log").read_text()[-2000:]
    duration = time.time() - t0
    rng, kills, lives, trials, t1 = random.Random(a.seed), 0, 0, [], time.time()
    while kills < a.kills:  # one trial: kill at random moments until a rerun finishes, then compare
        run = out / f"trial{len(trials)}"
        while True:
            lives += 1
            pid = fork_chain(run, out / "trials.log")
            time.sleep(rng.uniform(0.05, duration))  # any moment of a run as long as an uninterrupted one
            finished, status = os.waitpid(pid, os.WNOHANG)
            if not finished:
                os.kill(pid, 9)
                wait(pid)
                kills += 1
                continue
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                raise SystemExit(f"a rerun failed with exit code {code}; see {out / 'trials.log'}")
            break
        ours, ref = fingerprint_in_child(run), fingerprint_in_child(out / "reference")
        trials.append(ours == ref)
        if ours == ref:
            shutil.rmtree(run)
        else:  # kept for inspection
            diff = {k: sorted(f for f in ref[k] if ours[k].get(f) != ref[k][f]) if isinstance(ref[k], dict) else
                    [ours[k], ref[k]] for k in ref if ours[k] != ref[k]}
            print(json.dumps({"trial": run.name, "differs": diff}), flush=True)
    print(json.dumps({"kills": kills, "runs": lives, "trials": len(trials), "identical": sum(trials),
                      "reference_seconds": round(duration, 1), "trials_seconds": round(time.time() - t1, 1)}))
    raise SystemExit(0 if all(trials) else 1)


if __name__ == "__main__":
    main()
