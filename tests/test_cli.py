"""The dfm command as a user runs it: subprocesses, real config files, one-line errors."""
import csv
import json
import os
import subprocess
import sys

import pytest
from conftest import CONFIGS, REPO, TINY_CHAIN, dfm_in_process, run_dfm
from wandb_records import artifacts, config, logged

from dfm_lightning.data.extracted import sha256_file
from dfm_lightning.loggers import run_id



def assert_one_line_error(proc, *needles: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    for needle in needles:
        assert needle in last, last


def test_top_level_help(tmp_path):
    proc = run_dfm("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for sub in ("fit", "validate", "test", "robustness", "extract", "chain", "crosseval"):
        assert f"  {sub}" in proc.stdout


@pytest.mark.parametrize("sub", ["fit", "validate", "test", "robustness", "extract", "chain", "crosseval"])
def test_subcommand_help(tmp_path, sub):
    proc = dfm_in_process(sub, "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "--config" in proc.stdout and "--print_config" in proc.stdout


def test_fit_then_robustness(tmp_path):
    proc = run_dfm("fit", "--config", str(CONFIGS / "fit" / "digits_lenet.yaml"), "--trainer.max_epochs", "2",
                   "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir", "out", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = next(tmp_path.rglob("*.ckpt"))
    proc = run_dfm("robustness", "--config", str(CONFIGS / "fit" / "digits_lenet.yaml"), "--ckpt_path", str(ckpt),
                   "--protocol.eps", "[0, 1]", "--protocol.steps", "3", "--trainer.enable_progress_bar", "false", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    header, _, row, count = proc.stdout.strip().splitlines()[-4:]
    assert "eps=0" in header and "eps=1" in header and count.startswith("(360 test images")  # digits: all 360
    clean, eps1 = (float(v) for v in row.strip("| ").split("|")[1:])
    assert 30 < clean <= 100 and eps1 <= clean
    proc = dfm_in_process("robustness", "--config", str(CONFIGS / "fit" / "digits_lenet.yaml"), "--ckpt_path",
                          str(ckpt), "--protocol.eps", "[-1]", cwd=tmp_path)
    assert_one_line_error(proc, "eps", ">= 0")


def test_missing_dataset(tmp_path):
    proc = dfm_in_process("fit", "--config", str(CONFIGS / "fit" / "mnist_lenet.yaml"), "--data.root",
                          str(tmp_path / "nowhere"), "--data.download", "false", "--trainer.max_epochs", "1", cwd=tmp_path)
    assert_one_line_error(proc, "not found", str(tmp_path / "nowhere"))
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # no W&B run: it failed before the Trainer ran


def test_unknown_architecture(tmp_path):
    proc = dfm_in_process("fit", "--config", str(CONFIGS / "fit" / "digits_lenet.yaml"), "--model.arch", "alexnet",
                          cwd=tmp_path)
    assert_one_line_error(proc, "alexnet", "lenet", "resnet18")


def test_a_dfm_method_the_students_cannot_take_fails_before_m0(tmp_path):
    # M0 is a VGG8 (batch norm), the students LeNets (none): D2 could not be extracted, so nothing starts
    proc = dfm_in_process("chain", *TINY_CHAIN, "--run_dir", "r", "--model.arch", "vgg8",
                          "--distill.arch", "lenet", "--extraction.method", "bn_statistics", cwd=tmp_path)
    assert_one_line_error(proc, "bn_statistics", "batch norm")
    assert not (tmp_path / "r" / "gen0").exists()


def test_missing_checkpoint(tmp_path):
    proc = dfm_in_process("extract", "--ckpt_path", "nope.ckpt", "--out_dir", "d", cwd=tmp_path)
    assert_one_line_error(proc, "nope.ckpt", "not found")


def test_bad_wandb_mode_is_one_line_and_empty_means_unset(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "ofline")
    proc = dfm_in_process("chain", "--config", str(CONFIGS / "quickstart.yaml"), "--run_dir", "r", cwd=tmp_path)
    assert_one_line_error(proc, "WANDB_MODE='ofline'", "offline")
    assert not (tmp_path / "r" / "gen0").exists()
    from dfm_lightning.loggers import resolve_wandb_mode

    monkeypatch.setenv("WANDB_MODE", "")
    assert resolve_wandb_mode("disabled") == "disabled" and "WANDB_MODE" not in os.environ


def test_chain_results_schema_figures_and_wandb(tiny_chain):
    results = json.loads((tiny_chain / "results.json").read_text())
    gens = results["generations"]
    assert [g["generation"] for g in gens] == [0, 1, 2]
    for g in gens:
        assert set(g) == {"generation", "test_accuracy", "robust_accuracy", "robust_num_images", "num_train_samples", "train_seconds",
                          "extract_seconds"}
        assert set(g["robust_accuracy"]) == {"0", "1"} and 0 <= g["test_accuracy"] <= 1
    assert gens[0]["test_accuracy"] > 0.85 and gens[1]["test_accuracy"] > 0.5  # chance is 0.1
    assert gens[0]["num_train_samples"] == 1437 and gens[1]["num_train_samples"] == 1300
    assert gens[0]["extract_seconds"] == 0 and gens[1]["extract_seconds"] > 0
    assert results["config"]["extraction"]["num_samples"] == 1500
    assert "| M2 |" in (tiny_chain / "results.md").read_text()
    for png in ("accuracy.png", "gen1/extracted.png", "gen2/extracted.png"):
        assert (tiny_chain / png).read_bytes()[:4] == b"\x89PNG"
    runs = sorted((tiny_chain / "wandb").glob("offline-run-*"))
    assert len(runs) == 3  # one W&B run per generation, grouped by chain
    ckpt_sha = [sha256_file(tiny_chain / f"gen{g}" / "model.ckpt") for g in range(3)]
    for run, g in zip(runs, gens):
        k = g["generation"]
        history, info = logged(run)
        assert info["group"] == "run" and info["job_type"] == f"gen{k}"
        assert run.name.endswith(run_id(tiny_chain, f"gen{k}"))  # a rerun of this generation continues this run
        assert history["chain/test_acc"] == pytest.approx(g["test_accuracy"], abs=1e-6)
        assert history["chain/robust_acc_eps1"] == pytest.approx(g["robust_accuracy"]["1"], abs=1e-6)
        assert history["chain/generations/nrows"] == k + 1  # the chain so far, in every generation's run
        arts = {a["name"]: a for a in artifacts(run)}
        model = arts[f"run-M{k}"]  # lineage: M(k-1) -> D(k) -> M(k), as artifacts
        assert model["type"] == "model" and model["files"] == ["model.ckpt"]
        assert f"sha256-{ckpt_sha[k][:16]}" in model["aliases"] and model["metadata"]["sha256"] == ckpt_sha[k]
        if k:
            data = arts[f"run-D{k}"]
            source = f"run-M{k - 1}:sha256-{ckpt_sha[k - 1][:16]}"
            assert data["type"] == "dataset" and len(data["files"]) == 11 and "manifest.json" in data["files"]
            assert data["metadata"]["num_samples"] == 1500 and data["metadata"]["derived_from"] == source
            assert config(run)["inputs"] == [source]  # offline: wandb refuses use_artifact, so recorded here
            metrics = json.loads((tiny_chain / f"gen{k}" / "data" / "manifest.json").read_text())["metrics"]
            assert set(metrics) == {"logit_distance", "delta_l2", "hits_virtual_class", "seconds", "images_per_s"}
            assert 0 <= metrics["hits_virtual_class"] <= 1 and metrics["logit_distance"] > 0


def test_report_pools_seeds_and_puts_the_papers_row_beside_a_matching_chain(tiny_chain, tmp_path):
    from dfm_lightning.report import report

    res = json.loads((tiny_chain / "results.json").read_text())
    seed1 = json.loads(json.dumps(res))
    seed1["config"]["seed_everything"] = 1
    for g in seed1["generations"]:
        g["test_accuracy"] -= 0.02  # 2 points lower: mean 1 point lower, +- 1
    mnist = json.loads(json.dumps(res))
    mnist["config"]["data"]["name"] = "mnist"
    for name, r in (("seed1", seed1), ("mnist", mnist)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(r))
    run = tmp_path / "run"  # the tiny chain with a cross-evaluation in it
    run.mkdir()
    (run / "results.json").write_text(json.dumps(res))
    (run / "x").mkdir()
    (run / "x" / "crosseval.json").write_text(json.dumps({"datasets": ["a/gen1/data", "a/gen2/data"], "source": [0, 1],
                                                           "checkpoints": ["a/gen0/model.ckpt", "a/gen1/model.ckpt"],
                                                           "accuracy": [[1.0, 0.5], [0.75, 1.0]]}))
    proc = dfm_in_process("report", str(run), str(tmp_path / "seed1"), str(tmp_path / "mnist"), "--out_dir", "out",
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == report([str(run), str(tmp_path / "seed1"), str(tmp_path / "mnist")]).strip() + \
        "\n\n![accuracy per generation](accuracy.png)"
    rows = list(csv.reader(open(tmp_path / "out" / "table1.csv")))
    assert rows[0] == ["chain", "M0", "M1", "M2"]
    m0 = 100 * res["generations"][0]["test_accuracy"]
    assert rows[1] == ["run (seeds 0, 1)", f"{m0 - 1:.2f} ± 1.00", *rows[1][2:]]  # mean +- half the range
    assert rows[2] == ["paper: mnist lenet", "99.5", "98.5", "96.6"] and rows[3][0] == "mnist"
    table4 = (tmp_path / "out" / "table4.md").read_text()
    assert "| model \\ data | a/gen1 | a/gen2 |" in table4
    assert "| a/gen0 | 100.0* | 50.0 |" in table4 and "| a/gen1 | 75.0 | 100.0* |" in table4
    assert r"\pm" in (tmp_path / "out" / "table1.tex").read_text()
    assert (tmp_path / "out" / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    proc = dfm_in_process("report", str(tmp_path / "nothing"), cwd=tmp_path)
    assert_one_line_error(proc, "holds no results.json")

    # a cross-evaluation in each seed's run dir is one pooled Table 4; another chain's is a table of its own
    cross = {"datasets": ["b/gen1/data", "b/gen2/data"], "source": [0, 1], "checkpoints": ["b/gen0/model.ckpt",
             "b/gen1/model.ckpt"], "accuracy": [[0.9, 0.5], [0.7, 0.8]]}
    for name in ("seed1", "mnist"):
        (tmp_path / name / "x").mkdir()
        (tmp_path / name / "x" / "crosseval.json").write_text(json.dumps(cross))
    proc = dfm_in_process("report", str(run), str(tmp_path / "seed1"), str(tmp_path / "mnist"), "--out_dir", "out2",
                          cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert sorted(p.name for p in (tmp_path / "out2").glob("table4*.md")) == ["table4-mnist.md", "table4-run.md"]
    pooled = (tmp_path / "out2" / "table4-run.md").read_text()
    assert "| a/gen0 | 95.0 ± 5.0* | 50.0 ± 0.0 |" in pooled and "| a/gen1 | 72.5 ± 2.5 | 90.0 ± 10.0* |" in pooled
    assert "| b/gen0 | 90.0* | 50.0 |" in (tmp_path / "out2" / "table4-mnist.md").read_text()
    assert "cross-evaluation of run (seeds 0, 1)" in proc.stdout and "cross-evaluation of mnist (" in proc.stdout


def test_chain_rerun_continues_without_recomputing(tiny_chain):
    stamps = {p: p.stat().st_mtime_ns for p in tiny_chain.rglob("*") if p.is_file() and "wandb" not in p.parts}
    proc = run_dfm("chain", "--run_dir", str(tiny_chain), *TINY_CHAIN, cwd=tiny_chain.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for p in ("gen0/model.ckpt", "gen1/eval.json", "gen2/data/manifest.json", "gen2/model.ckpt"):
        assert (tiny_chain / p).stat().st_mtime_ns == stamps[tiny_chain / p]


def test_chain_resumes_after_losing_a_step(tiny_chain, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(tiny_chain, run)
    (run / "gen2" / "eval.json").unlink()
    (run / "gen2" / "model.ckpt").unlink()
    data_stamp = (run / "gen2" / "data" / "manifest.json").stat().st_mtime_ns
    proc = run_dfm("chain", "--run_dir", str(run), *TINY_CHAIN, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run / "gen2" / "data" / "manifest.json").stat().st_mtime_ns == data_stamp  # extraction not redone
    assert json.loads((run / "results.json").read_text())["generations"][2]["generation"] == 2


def test_chain_with_other_settings_is_refused(tiny_chain):
    args = [a if a != "1500" else "1600" for a in TINY_CHAIN]
    proc = dfm_in_process("chain", "--run_dir", str(tiny_chain), *args, cwd=tiny_chain.parent)
    assert_one_line_error(proc, "extraction", "new --run_dir")


def test_extract_command(tiny_chain, tmp_path):
    proc = run_dfm("extract", "--ckpt_path", str(tiny_chain / "gen0" / "model.ckpt"), "--out_dir", "d",
                   "--extraction.substitute", "noise", "--extraction.num_samples", "120", "--extraction.shard_size", "50",
                   "--extraction.steps", "5", "--trainer", "{accelerator: cpu, enable_progress_bar: false}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    manifest = json.loads((tmp_path / "d" / "manifest.json").read_text())
    assert manifest["num_samples"] == 120 and len(manifest["shards"]) == 3
    assert len(manifest["source_checkpoint_sha256"]) == 64


def test_crosseval(tiny_chain, tmp_path):
    ckpts = [str(tiny_chain / f"gen{g}" / "model.ckpt") for g in range(3)]
    data = [str(tiny_chain / f"gen{g}" / "data") for g in (1, 2)]
    proc = run_dfm("crosseval", "--datasets", json.dumps(data), "--checkpoints", json.dumps(ckpts), "--out_dir", "x",
                   "--num_samples", "300", "--trainer", "{accelerator: cpu}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads((tmp_path / "x" / "crosseval.json").read_text())
    acc = result["accuracy"]
    assert len(acc) == 3 and all(len(row) == 2 for row in acc)
    assert result["source"] == [0, 1]  # D1 came from M0, D2 from M1
    assert acc[0][0] == 1.0 and acc[1][1] == 1.0  # a model agrees with its own extracted data by construction
    assert acc[2][0] < 1.0 or acc[2][1] < 1.0
    table = (tmp_path / "x" / "crosseval.md").read_text()
    run = tiny_chain.name  # rows and columns named alike, RUN/genG
    assert f"| {run}/gen0 | 100.0* |" in table and f"| {run}/gen1 |" in table and f"{run}/gen2 |\n" in table


def test_cross_architecture_chain(tiny_chain, tmp_path):
    args = [a for a in TINY_CHAIN]
    args[args.index("--generations") + 1] = "1"
    proc = run_dfm("chain", "--run_dir", "x", *args, "--m0_ckpt_path", str(tiny_chain / "gen0" / "model.ckpt"),
                   "--distill.arch", "mlp", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import torch

    hp = torch.load(tmp_path / "x" / "gen1" / "model.ckpt", weights_only=True)["hyper_parameters"]
    assert hp["arch"] == "mlp"
    gens = json.loads((tmp_path / "x" / "results.json").read_text())["generations"]
    assert gens[0]["test_accuracy"] == json.loads((tiny_chain / "results.json").read_text())["generations"][0]["test_accuracy"]
    assert gens[1]["test_accuracy"] > 0.4  # an MLP learnt digits from LeNet's extracted photo crops
    assert gens[0]["num_train_samples"] is None  # a handed-over M0's training set is not known to the chain
    m0_row = next(line for line in (tmp_path / "x" / "results.md").read_text().splitlines() if line.startswith("| M0 |"))
    assert " | ? | " in m0_row


def test_wandb_falls_back_to_offline_by_itself(tmp_path):
    env = {"WANDB_MODE": None, "WANDB_API_KEY": None, "HOME": str(tmp_path), "NETRC": str(tmp_path / "none")}
    proc = run_dfm("fit", "--config", str(CONFIGS / "fit" / "digits_lenet.yaml"), "--trainer.max_epochs", "1",
                   "--trainer.limit_train_batches", "12", "--trainer.enable_progress_bar", "false", cwd=tmp_path,
                   env=env, timeout=240)  # 12 batches: Lightning's default would log nothing before step 50
    assert proc.returncode == 0, proc.stderr[-2000:]
    notes = [line for line in proc.stderr.splitlines() if line.startswith("W&B:")]
    assert len(notes) == 1 and "offline" in notes[0] and "wandb sync" in notes[0]
    run = next((tmp_path / "runs" / "wandb").glob("offline-run-*"))
    history, _ = logged(run)
    assert "train/loss" in history and "epoch" in history


@pytest.mark.parametrize("sub,args", [
    ("chain", ["--config", "configs/quickstart.yaml", "--run_dir", "r"]),
    ("extract", ["--ckpt_path", "m.ckpt", "--out_dir", "d"]),
    ("crosseval", ["--datasets", "[d]", "--checkpoints", "[m.ckpt]", "--out_dir", "x"]),
])
def test_unknown_trainer_key_is_one_line(tmp_path, sub, args):
    for bad in (["--trainer.acelerator", "cpu"], ["--trainer", "{acelerator: cpu}"]):
        proc = dfm_in_process(sub, *args, *bad, cwd=tmp_path)
        assert proc.returncode == 2
        assert_one_line_error(proc, f"dfm {sub}: error:", "acelerator")
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not any(tmp_path.iterdir())  # nothing was written


def test_trainer_options_are_typed(tmp_path):
    proc = dfm_in_process("chain", "--config", "configs/quickstart.yaml", "--trainer.max_epochs", "1",
                          "--trainer.enable_progress_bar", "false", "--print_config", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    trainer = proc.stdout.split("\ntrainer:\n", 1)[1]
    assert "\n  max_epochs: 1\n" in trainer and "\n  enable_progress_bar: false\n" in trainer


def test_top_level_help_imports_nothing_heavy():
    code = "import sys; from dfm_lightning.cli import main; main(['--help']); print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'pytorch_lightning', 'jsonargparse', 'wandb')))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("[]"), proc.stdout[-500:]


def test_lightning_optimizer_flags_are_off(tmp_path):
    proc = dfm_in_process("fit", "--config", str(CONFIGS / "fit" / "digits_lenet.yaml"), "--optimizer", "SGD",
                          cwd=tmp_path)
    assert_one_line_error(proc, "optimizer")
    assert proc.returncode == 2


def test_handed_over_m0_architecture_is_the_students_default(tmp_path):
    """A chain handed an `mlp` M0 distils `mlp` students unless distill.arch says otherwise."""
    import pytorch_lightning as pl
    import torch

    from dfm_lightning.data import OriginDataModule
    from dfm_lightning.modules import Classifier, Distiller, checkpoint_info, load_module

    pl.seed_everything(0)
    trainer = pl.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Classifier("mlp", lr=3e-3), datamodule=OriginDataModule("digits", batch_size=64))
    trainer.save_checkpoint(tmp_path / "mlp.ckpt", weights_only=True)
    assert checkpoint_info(tmp_path / "mlp.ckpt")["class"] == "Classifier"
    args = [a for a in TINY_CHAIN]
    args[args.index("--generations") + 1] = "1"
    proc = run_dfm("chain", "--run_dir", "x", *args, "--m0_ckpt_path", str(tmp_path / "mlp.ckpt"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = torch.load(tmp_path / "x" / "gen1" / "model.ckpt", weights_only=True)
    assert ckpt["hyper_parameters"]["arch"] == "mlp"
    assert ckpt["dfm_module"] == {"class": "Distiller", "arch": "mlp"}
    assert isinstance(load_module(tmp_path / "x" / "gen1" / "model.ckpt"), Distiller)


def test_checkpoint_written_before_the_class_record_still_loads(tmp_path):
    """Older DtM checkpoints carried a `distill` hyper-parameter instead of the class record."""
    import torch

    from dfm_lightning.modules import Distiller, load_module

    state = {"state_dict": Distiller("lenet").state_dict(),
             "hyper_parameters": {"arch": "lenet", "in_channels": 1, "num_classes": 10, "input_size": 28,
                                  "optimizer": "adam", "lr": 0.002, "weight_decay": 0.0, "momentum": 0.9,
                                  "scheduler": "none", "distill": True}}
    torch.save(state, tmp_path / "old.ckpt")
    assert isinstance(load_module(tmp_path / "old.ckpt"), Distiller)
