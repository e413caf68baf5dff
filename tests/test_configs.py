"""Every shipped YAML parses; recipes and pieces run a few steps on tiny stand-ins where this CPU can."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from helpers import cli, tiny_args

ROOT = Path(__file__).resolve().parents[1]
RECIPES = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").glob("*.yaml"))
# configs/offline/<recipe>.yaml are data pieces of one recipe each: tests/test_recipes_run.py runs them with it
PIECES = sorted(
    p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").glob("*/*.yaml") if p.parent.name != "offline"
)
CLASSIFICATION = ["configs/quickstart.yaml", "configs/sentiment_sst2.yaml", "configs/topic_ag_news.yaml",
                  "configs/hf_trainer_classic.yaml", "configs/regression_stsb.yaml"]
# pieces this CPU-only machine can parse but not run
NEEDS_GPU = {"configs/precision/16-mixed.yaml", "configs/strategy/fsdp.yaml", "configs/strategy/deepspeed.yaml",
             "configs/strategy/multinode.yaml", "configs/strategy/ddp.yaml"}  # ddp: see test_ddp_cpu.py


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


@pytest.mark.parametrize("piece", PIECES)
def test_piece_combines_with_quickstart(piece: str, tmp_path: Path, tiny_bert: Path, sentiment_files: dict) -> None:
    args = tiny_args(tmp_path / "run", tiny_bert, sentiment_files)
    if "/logger/" in piece:  # the piece brings its own logger: keep it, in the temporary directory
        at = args.index("--trainer.logger")
        args = [*args[:at], *args[at + 2 :], "--trainer.logger.save_dir", str(tmp_path / "logs")]
    combined = ["fit", "--config", "configs/quickstart.yaml", "--config", piece, *args]
    if piece in NEEDS_GPU:
        with pytest.raises(SystemExit):
            cli(*combined, "--print_config")
        return
    result = cli(*combined, "--trainer.max_steps", "2", "--trainer.val_check_interval", "2",
                 "--data.init_args.batch_size", "4", "--export.enabled", "false")
    assert result.trainer.global_step == 2
