"""Every shipped recipe runs as the user runs it: its own precision, clipping, accumulation, loggers and callbacks,
for 2 optimizer steps, with only the backbone (and hub data) swapped for stand-ins through LIT_FT_OVERLAY
(see tests/stand_ins.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from builders import SHARED_DATA, shared_data
from stand_ins import RECIPES, ROOT, STEPS, offline_piece, overlays, read_recipe

from lit_ft.commands.cli import OVERLAY_ENV, run
from lit_ft.commands.trainer_cli import DEFAULT_GRADIENT_CLIP
from lit_ft.task_defaults import task_trainer_defaults

pytestmark = pytest.mark.usefixtures("single_thread")


def checkout(tmp_path: Path) -> Path:
    """A working directory where the recipes' relative paths resolve: `../shared/data` and `runs/`."""
    shared_data(".")
    (tmp_path / "shared").symlink_to(SHARED_DATA.parent, target_is_directory=True)
    work = tmp_path / "work"
    work.mkdir()
    return work


def logger_classes(trainer_cfg: dict) -> list[str] | None:
    loggers = trainer_cfg.get("logger")
    if loggers is None:
        return None
    return [lg["class_path"].rsplit(".", 1)[-1] for lg in (loggers if isinstance(loggers, list) else [loggers])]


def test_every_hub_recipe_has_an_offline_piece_and_nothing_else_does() -> None:
    pieces = {p for p in [*ROOT.glob("configs/offline/*.yaml"), *ROOT.glob("plugins/*/configs/offline/*.yaml")]}
    wanted = {offline_piece(r) for r in RECIPES} - {None}
    assert pieces == wanted


@pytest.mark.parametrize("recipe", RECIPES, ids=[r.stem for r in RECIPES])
def test_recipe_runs_with_its_own_settings(recipe: Path, stand_in_models: dict[str, Path], tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(checkout(tmp_path))
    monkeypatch.setenv(OVERLAY_ENV, os.pathsep.join(map(str, overlays(recipe, stand_in_models, tmp_path / "overlay"))))
    result = run(["fit", "--config", str(recipe)])
    assert result is not None
    own, trainer = read_recipe(recipe)["trainer"], result.trainer
    accumulate = own.get("accumulate_grad_batches", 1)
    assert trainer.global_step == STEPS
    assert trainer.fit_loop.epoch_loop.batch_progress.total.completed == STEPS * accumulate
    assert trainer.precision == own.get("precision", "32-true")
    task_default = task_trainer_defaults(read_recipe(recipe)["model"]["task"])
    assert trainer.gradient_clip_val == own.get("gradient_clip_val",
                                               task_default.get("gradient_clip_val", DEFAULT_GRADIENT_CLIP))
    assert trainer.accumulate_grad_batches == accumulate
    if logger_classes(own) is not None:
        assert [type(lg).__name__ for lg in trainer.loggers] == logger_classes(own)
    best = Path(trainer.checkpoint_callback.best_model_path)
    assert best.is_file() and best.resolve().is_relative_to(Path(own["default_root_dir"]).resolve())
    assert all(torch.isfinite(v).all() for v in trainer.callback_metrics.values())
