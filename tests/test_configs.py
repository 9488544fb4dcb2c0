"""Every config and every documented command is *instantiated* (classes built, nothing trained), so a typo in a
config or a doc fails here; the chain's options are the classes' own; the package's layers import downwards only."""
import ast
import re
import shlex
from pathlib import Path

import pytest
import pytorch_lightning as pl
from conftest import CONFIGS, REPO

from dfm_lightning.cli import resolve_configs
from dfm_lightning.commands import CHAIN_GROUPS, build_chain, chain_parser, lightning
from dfm_lightning.modules import Classifier

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md")), *sorted(CONFIGS.rglob("*.yaml"))]
PLACEHOLDER_FILES = ("--ckpt_path", "--m0_ckpt_path")


def documented_commands() -> list[tuple[str, list[str]]]:
    """(where, argv) for every `dfm SUBCOMMAND ...` written in the README, docs/ and the configs' comments."""
    found = []
    for path in DOCS:
        text = re.sub(r"\\\n\s*#?\s*", " ", path.read_text())  # join continued lines (also inside comments)
        for m in re.finditer(r"(?:^|`|#\s+|\$ )(dfm (?:fit|validate|test|robustness|chain|extract|crosseval|report) [^`\n]*)",
                             text, flags=re.M):
            cmd = re.split(r"\s(?:\||>|&&|#)\s", m.group(1))[0]
            found.append((f"{path.relative_to(REPO)}: {cmd}", shlex.split(cmd)[1:]))
    return found


COMMANDS = documented_commands()


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> str:
    from dfm_lightning.data import OriginDataModule

    path = tmp_path_factory.mktemp("ckpt") / "m.ckpt"
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Classifier("lenet"), datamodule=OriginDataModule("digits", batch_size=16))
    trainer.save_checkpoint(path, weights_only=True)
    return str(path)


def _with_files(argv: list[str], ckpt: str) -> list[str]:
    """Placeholder checkpoint paths (M.ckpt, RUN/gen0/model.ckpt) replaced by a real one."""
    return [ckpt if i and argv[i - 1] in PLACEHOLDER_FILES and not Path(a).exists() else a for i, a in enumerate(argv)]


def test_docs_hold_commands_for_every_config():
    assert len(COMMANDS) >= 10
    used = {a for _, argv in COMMANDS for a in argv if a.endswith(".yaml")}
    for config in CONFIGS.rglob("*.yaml"):
        assert f"configs/{config.relative_to(CONFIGS)}" in used, f"{config} appears in no documented command"


@pytest.mark.parametrize("where,argv", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_instantiates(where, argv, tiny_ckpt, tmp_path, monkeypatch):
    import numpy as np

    monkeypatch.chdir(REPO)  # commands are written for the checkout's root; nothing below writes there
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    (tmp_path / "coco-substitute").mkdir()  # the chain checks its substitute source exists: a stand-in
    np.savez(tmp_path / "coco-substitute" / "coco128_substitute_64.npz", images=np.zeros((2, 64, 64, 3), np.uint8))
    monkeypatch.setenv("DFM_DATA_DIR", str(tmp_path))
    sub, args = argv[0], _with_files(resolve_configs(argv[1:]), tiny_ckpt)  # as `dfm` resolves config names
    if "--help" in args or "--print_config" in args:
        with pytest.raises(SystemExit) as done:
            build_chain(args) if sub == "chain" else lightning(args, run=False)
        assert done.value.code in (0, None)
    elif sub == "chain":
        runner = build_chain(args)  # validates every group: builds M0, a student and the data module
        pl.Trainer(**{**runner.trainer_kwargs, "logger": False})
    elif sub in ("fit", "validate", "test", "robustness"):
        drop = {"--ckpt_path"} | {a for a in args if a.startswith("--protocol.")}
        kept = [a for i, a in enumerate(args) if a not in drop and (i == 0 or args[i - 1] not in drop)]
        cli = lightning([*kept, "--trainer.logger", "false"], run=False)
        assert isinstance(cli.model, Classifier) and cli.datamodule is not None and cli.trainer is not None
    elif sub == "report":  # on the files it names where they exist (the committed raw results), into tmp_path
        from dfm_lightning.report import report

        dirs = [a for a in args[:next((i for i, a in enumerate(args) if a.startswith("-")), len(args))]]
        if all(Path(d).exists() for d in dirs):
            assert "Table 1" in report(dirs, str(tmp_path / "report"))
            out = args[args.index("--out_dir") + 1] if "--out_dir" in args else None
            if out and Path(out, "report.md").exists():  # committed tables are what the command writes today
                assert (tmp_path / "report" / "report.md").read_text() == Path(out, "report.md").read_text()
    else:  # extract / crosseval: their options parse (they name checkpoints and datasets, not configs)
        assert any(a.startswith("--") for a in args)


def test_fit_config_is_the_chains_m0_part():
    fit = lightning(["--config", str(CONFIGS / "fit" / "mnist_lenet.yaml"), "--trainer.logger", "false"], run=False)
    runner = build_chain(["--config", str(CONFIGS / "fit" / "mnist_lenet.yaml"),
                          "--config", str(CONFIGS / "chain" / "mnist.yaml"), "--run_dir", "r"])
    assert runner.model["arch"] == fit.model.hparams.arch == "lenet_wide"
    assert {k: runner.model[k] for k in ("lr", "optimizer", "scheduler")} == {
        k: fit.model.hparams[k] for k in ("lr", "optimizer", "scheduler")}
    assert runner.data["batch_size"] == fit.datamodule.batch_size and runner.trainer_kwargs["max_epochs"] == 20


def test_chain_groups_are_the_classes_signatures():
    import inspect

    keys = set(chain_parser().get_defaults().keys())
    for group, cls in CHAIN_GROUPS.items():
        skipped = {"in_channels", "num_classes", "input_size", "path", "origin", "root", "download", "split_seed"}
        params = set(inspect.signature(cls).parameters) - (skipped if group != "data" else set())
        assert {f"{group}.{p}" for p in params} <= keys, group
    assert {"trainer.max_epochs", "trainer.devices", "trainer.precision"} <= keys
    assert "trainer.logger" not in keys  # the chain logs per generation itself (wandb.*)


def test_robust_overlay_serves_fit_and_chain():
    robust = ["--config", str(CONFIGS / "robust" / "mnist.yaml")]
    fit = lightning(["--config", str(CONFIGS / "fit" / "mnist_lenet.yaml"), *robust, "--trainer.logger", "false"], run=False)
    runner = build_chain(["--config", str(CONFIGS / "fit" / "mnist_lenet.yaml"), "--config",
                          str(CONFIGS / "chain" / "mnist.yaml"), *robust, "--run_dir", "r"])
    assert fit.model.hparams.adv_eps == runner.model["adv_eps"] == 1.0
    assert runner.student["arch"] == "lenet" and runner.data["augment"] is False


LAYERS = {"errors": 0, "signals": 0, "lock": 1, "callbacks": 2, "models": 1, "attacks": 1, "data": 1, "loggers": 1, "modules": 2, "extraction": 3,
          "evaluation": 3, "chain": 4, "report": 5, "commands": 6, "cli": 7, "configs": 0}


def test_imports_point_down_and_have_no_cycles():
    package = REPO / "dfm_lightning"
    edges = {}
    for path in package.rglob("*.py"):
        name = path.relative_to(package).with_suffix("").parts
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("dfm_lightning"):
                deps.add(node.module.split(".")[1] if "." in node.module else None)
            elif isinstance(node, ast.ImportFrom) and node.module == "dfm_lightning":
                deps.update(a.name for a in node.names)
        edges[name[0]] = edges.get(name[0], set()) | {d for d in deps if d and d != name[0]}
    for unit, deps in edges.items():
        for dep in deps:
            assert LAYERS[dep] < LAYERS[unit], f"dfm_lightning.{unit} imports dfm_lightning.{dep} (same or higher layer)"
    # within modules/: classifier <- distill <- checkpoint, never back
    src = (package / "modules" / "classifier.py").read_text()
    assert "modules.distill" not in src and "modules.checkpoint" not in src
