"""Every shipped YAML parses; recipes and pieces run a few steps on tiny stand-ins where this CPU can."""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from helpers import cli, tiny_args
from jsonargparse import ArgumentParser
from lightning.pytorch.plugins.precision import MixedPrecision
from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, FSDPStrategy, Strategy

from lit_ft.commands.trainer_cli import LitFtCLI
from lit_ft.datamodule import TaskDataModule
from lit_ft.module import FineTuner

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").glob("*.yaml"))
# configs/offline/<recipe>.yaml are data pieces of one recipe each: tests/test_recipes_run.py runs them with it;
# configs/tune/*.yaml are search spaces of `lit_ft tune`, run by tests/test_docs_commands.py (docs/tune.md)
PIECES = sorted(
    p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").glob("*/*.yaml")
    if p.parent.name not in ("offline", "tune")
)
CLASSIFICATION = ["configs/quickstart.yaml", "configs/sentiment_sst2.yaml", "configs/topic_ag_news.yaml",
                  "configs/hf_trainer_classic.yaml", "configs/regression_stsb.yaml"]
# pieces this CPU-only machine can parse but not run: the tests below check what they set up instead
NEEDS_GPU = {"configs/precision/16-mixed.yaml", "configs/strategy/fsdp.yaml", "configs/strategy/deepspeed.yaml",
             "configs/strategy/multinode.yaml", "configs/strategy/ddp.yaml"}  # ddp: see test_conformance.py


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_parses(recipe: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli("fit", "--config", recipe, "--print_config")
    assert done.value.code in (0, None)
    assert "class_path" in capsys.readouterr().out


def test_every_recipe_is_run_by_some_test() -> None:
    sources = "".join(p.read_text() for p in [*ROOT.glob("tests/*.py"), *ROOT.glob("plugins/*/tests/*.py")])
    missing = [r for r in RECIPES if r not in sources and Path(r).name not in sources]
    assert not missing, f"recipes without a test that runs them: {missing}"


def _regression_files(tmp: Path) -> dict[str, str]:
    path = tmp / "reg.csv"
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "label"])
        writer.writerows([(f"the film was {w}", s) for w, s in [("good", 4.5), ("bad", 0.5), ("dull", 1.0)] * 8])
    return {"train": str(path), "validation": str(path), "test": str(path)}


@pytest.mark.parametrize("recipe", CLASSIFICATION)
def test_classification_recipe_runs(recipe: str, tmp_path: Path, tiny_bert: Path, sentiment_files: dict) -> None:
    files = _regression_files(tmp_path) if "regression" in recipe else sentiment_files
    args = tiny_args(tmp_path / "run", tiny_bert, files)
    result = cli("fit", "--config", recipe, *args, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
                 "--trainer.limit_val_batches", "2", "--data.init_args.text_pair_column", "null",
                 "--data.init_args.batch_size", "4")
    assert result.trainer.global_step == 2
    assert Path(result.trainer.checkpoint_callback.best_model_path).is_file()


@pytest.mark.parametrize("piece", [p for p in PIECES if p not in NEEDS_GPU])
def test_piece_combines_with_quickstart(piece: str, tmp_path: Path, tiny_bert: Path, sentiment_files: dict) -> None:
    args = tiny_args(tmp_path / "run", tiny_bert, sentiment_files)
    if "/logger/" in piece:  # the piece brings its own logger: keep it, in the temporary directory
        at = args.index("--trainer.logger")
        args = [*args[:at], *args[at + 2 :], "--trainer.logger.save_dir", str(tmp_path / "logs")]
    combined = ["fit", "--config", "configs/quickstart.yaml", "--config", piece, *args]
    result = cli(*combined, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
                 "--data.init_args.batch_size", "4", "--export.enabled", "false")
    assert result.trainer.global_step == 2


# ---- the GPU pieces: what they set up, from the parsed and instantiated config -------------------------------
QUICKSTART_LOGGERS = ["lightning.pytorch.loggers.WandbLogger", "lit_ft.loggers.CSVLogger"]


def _resolved_trainer(capsys: pytest.CaptureFixture[str], piece: str) -> dict[str, Any]:
    """The trainer section of the full config `lit_ft fit --config quickstart --config PIECE` would run."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        cli("fit", "--config", "configs/quickstart.yaml", "--config", piece, "--print_config")
    assert done.value.code in (0, None)
    trainer: dict[str, Any] = yaml.safe_load(capsys.readouterr().out)["trainer"]
    assert [lg["class_path"] for lg in trainer["logger"]] == QUICKSTART_LOGGERS  # the recipe's loggers stay
    assert trainer["use_distributed_sampler"] is False  # lit_ft's samplers shard the data themselves
    return trainer


def _instantiate(value: Any, kind: Any) -> Any:
    """Build a config value as the CLI does (jsonargparse, class_path + init_args or a registered name)."""
    parser = ArgumentParser()
    parser.add_argument("--value", type=kind)
    return parser.instantiate(parser.parse_object({"value": value})).value


def test_16_mixed_piece_is_fp16_autocast_with_loss_scaling_on_gpu(capsys: pytest.CaptureFixture[str]) -> None:
    trainer = _resolved_trainer(capsys, "configs/precision/16-mixed.yaml")
    assert (trainer["precision"], trainer["accelerator"]) == ("16-mixed", "gpu")
    assert trainer["strategy"] == "auto" and trainer["num_nodes"] == 1
    # what Lightning builds for this precision on a CUDA device (on a CPU it would run bf16-mixed instead)
    with warnings.catch_warnings():  # "GradScaler is enabled, but CUDA is not available" on this machine
        warnings.simplefilter("ignore")
        plugin = MixedPrecision(trainer["precision"], device="cuda")
    assert plugin.precision == "16-mixed" and isinstance(plugin.scaler, torch.amp.GradScaler)


def test_ddp_pieces_build_ddp_trainers(capsys: pytest.CaptureFixture[str], tiny_bert: Path, tmp_path: Path,
                                       sentiment_files: dict[str, str]) -> None:
    for piece, nodes in (("configs/strategy/ddp.yaml", 1), ("configs/strategy/multinode.yaml", 2)):
        trainer = _resolved_trainer(capsys, piece)
        assert (trainer["strategy"], trainer["num_nodes"], trainer["devices"]) == ("ddp", nodes, "auto")
        assert trainer["accelerator"] == "auto"  # GPUs where there are any, though the recipe says cpu
        built = LitFtCLI(FineTuner, TaskDataModule, subclass_mode_data=True, save_config_callback=None,
                         auto_configure_optimizers=False, run=False,
                         args=["--config", "configs/quickstart.yaml", "--config", piece,
                               *tiny_args(tmp_path / "run", tiny_bert, sentiment_files)])
        strategy = built.trainer.strategy
        assert type(strategy) is DDPStrategy and strategy.num_nodes == nodes and built.trainer.num_nodes == nodes
        assert built.trainer.world_size == nodes * built.trainer.num_devices
        assert strategy._ddp_kwargs == {}  # plain DDP: no unused-parameter search, no static graph


def test_fsdp_piece_shards_every_transformer_layer_and_checkpoints_it(capsys: pytest.CaptureFixture[str]) -> None:
    from torch.distributed.fsdp import ShardingStrategy

    from lit_ft.sharding import TransformerLayers

    trainer = _resolved_trainer(capsys, "configs/strategy/fsdp.yaml")
    assert trainer["accelerator"] == "gpu" and trainer["devices"] == "auto"
    assert trainer["strategy"]["class_path"] == "lightning.pytorch.strategies.FSDPStrategy"
    strategy = _instantiate(trainer["strategy"], Strategy | str)
    assert type(strategy) is FSDPStrategy
    assert strategy.sharding_strategy == ShardingStrategy.FULL_SHARD
    assert strategy._state_dict_type == "full"  # checkpoints are one consolidated file
    assert isinstance(strategy.kwargs["auto_wrap_policy"], TransformerLayers)  # tests/test_sharding.py: which
    assert isinstance(strategy._activation_checkpointing_kwargs["auto_wrap_policy"], TransformerLayers)
    assert strategy.kwargs["use_orig_params"] is True  # parameter names kept: weight-decay groups still work
    assert not strategy.cpu_offload.offload_params and strategy.mixed_precision is None  # from a precision piece


def test_deepspeed_piece_is_zero_stage_2(capsys: pytest.CaptureFixture[str]) -> None:
    trainer = _resolved_trainer(capsys, "configs/strategy/deepspeed.yaml")
    assert (trainer["accelerator"], trainer["devices"]) == ("gpu", "auto")
    assert trainer["strategy"]["class_path"] == "lightning.pytorch.strategies.DeepSpeedStrategy"
    assert (trainer["strategy"]["init_args"]["stage"], trainer["strategy"]["init_args"]["offload_optimizer"]) == (
        2, False)


def test_deepspeed_piece_instantiates(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("deepspeed", reason="deepspeed is not installed here (pip install deepspeed)")
    trainer = _resolved_trainer(capsys, "configs/strategy/deepspeed.yaml")
    strategy = _instantiate(trainer["strategy"], Strategy | str)
    assert isinstance(strategy, DeepSpeedStrategy) and strategy.config["zero_optimization"]["stage"] == 2
