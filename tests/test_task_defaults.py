"""A task's own trainer defaults (`Task.trainer_defaults`): used by `fit` unless the run sets the option anywhere.

Classification and extractive QA train without gradient clipping by default (measured against the HF Trainer:
bench/README.md); token classification keeps lit_ft's default clip at 1.0 (tests/test_recipes_run.py checks every
recipe's value).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from helpers import cli, tiny_args

from lit_ft.commands.cli import OVERLAY_ENV, run
from lit_ft.commands.trainer_cli import DEFAULT_GRADIENT_CLIP
from lit_ft.errors import UserError

FAST = ["--trainer.max_steps", "1", "--trainer.limit_val_batches", "1", "--export.enabled", "false",
        "--data.init_args.batch_size", "4"]


def saved_clip(root: Path) -> object:
    return yaml.safe_load((root / "config.yaml").read_text())["trainer"]["gradient_clip_val"]


def test_classification_trains_without_clipping_unless_asked(tmp_path: Path, tiny_bert: Path,
                                                            sentiment_files: dict) -> None:
    base = ["fit", "--config", "configs/quickstart.yaml", *FAST]
    result = cli(*base, *tiny_args(tmp_path / "default", tiny_bert, sentiment_files))
    assert result.trainer.gradient_clip_val is None
    assert saved_clip(tmp_path / "default") is None  # the run's config.yaml says what ran

    # the CLI's default value, given on the command line, is the user's choice and is kept
    given = cli(*base, *tiny_args(tmp_path / "flag", tiny_bert, sentiment_files),
                "--trainer.gradient_clip_val", str(DEFAULT_GRADIENT_CLIP))
    assert given.trainer.gradient_clip_val == DEFAULT_GRADIENT_CLIP
    assert saved_clip(tmp_path / "flag") == DEFAULT_GRADIENT_CLIP


def test_a_recipe_or_overlay_setting_beats_the_task_default(tmp_path: Path, tiny_bert: Path, sentiment_files: dict,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    piece = tmp_path / "clip.yaml"
    piece.write_text("trainer:\n  gradient_clip_val: 0.5\n")
    base = ["fit", "--config", "configs/quickstart.yaml", *FAST]
    from_config = cli(*base, "--config", piece, *tiny_args(tmp_path / "config", tiny_bert, sentiment_files))
    assert from_config.trainer.gradient_clip_val == 0.5
    monkeypatch.setenv(OVERLAY_ENV, str(piece))
    from_overlay = cli(*base, *tiny_args(tmp_path / "overlay", tiny_bert, sentiment_files))
    assert from_overlay.trainer.gradient_clip_val == 0.5


def test_a_plugin_declaring_an_unknown_trainer_option_is_named(tmp_path: Path, tiny_bert: Path,
                                                               sentiment_files: dict) -> None:
    plugin = tmp_path / "clipped.py"
    plugin.write_text("from lit_ft.tasks.classification import ClassificationTask\n\n\n"
                      "class Clipped(ClassificationTask):\n    name = 'clipped_classification'\n"
                      "    trainer_defaults = {'gradient_clip': 1.0}\n")
    with pytest.raises(UserError, match=r"task 'clipped_classification' declares trainer_defaults for "
                                        r"gradient_clip, which lightning.pytorch.Trainer does not take"):
        run(["fit", "--plugins", str(plugin), "--config", "configs/quickstart.yaml", "--model.task",
             "clipped_classification", *FAST, *tiny_args(tmp_path / "run", tiny_bert, sentiment_files)])


def test_every_task_documents_its_trainer_defaults() -> None:
    """docs/training.md's per-task table says, for every built-in task, which trainer defaults it declares."""
    from lit_ft.registry import available_tasks

    text = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    section = text.split("\n## Defaults per task\n", 1)[1].split("\n## ", 1)[0]
    rows = {cells[1].strip("` "): cells[2].strip() for line in section.splitlines() if line.startswith("| `")
            for cells in [line.split("|")]}
    built_in = {name: entry.task for name, entry in available_tasks().items() if entry.source == "built-in"}
    assert set(rows) == set(built_in)
    for name, task in built_in.items():
        declared = ", ".join(f"`{key}: {json.dumps(value)}`" for key, value in task.trainer_defaults.items())
        assert rows[name] == (declared or "none"), name


def test_print_config_shows_the_task_default(tmp_path: Path) -> None:
    import subprocess
    import sys

    def printed(config: str) -> object:
        out = subprocess.run([sys.executable, "-m", "lit_ft", "fit", "--config", config, "--print_config"],
                             capture_output=True, text=True, check=True, cwd=Path(__file__).resolve().parents[1])
        return yaml.safe_load(out.stdout)["trainer"]["gradient_clip_val"]

    assert printed("configs/quickstart.yaml") is None  # classification's own default
    assert printed("configs/ner_conll2003.yaml") == DEFAULT_GRADIENT_CLIP  # lit_ft's default
