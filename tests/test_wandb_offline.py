"""W&B without credentials: lit_ft runs it offline, and the run file holds the logged metrics and config."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from helpers import cli, tiny_args

from lit_ft import wandb_file as wandb_reader


def test_offline_run_file_holds_metrics_and_config(
    tmp_path: Path, tiny_bert: Path, sentiment_files: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc credentials
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    args = tiny_args(tmp_path / "run", tiny_bert, sentiment_files, logger="null")
    result = cli("fit", "--config", "configs/quickstart.yaml", *args, "--trainer.max_epochs", "2",
                 "--trainer.logger", "lightning.pytorch.loggers.WandbLogger",
                 "--trainer.logger.save_dir", str(tmp_path / "run"), "--trainer.logger.project", "lit_ft_test")
    import os

    assert os.environ["WANDB_MODE"] == "offline"
    result.trainer.loggers[0].experiment.finish()
    run_files = list((tmp_path / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(run_files) == 1
    for _ in range(60):  # the W&B service process may still be flushing the file
        rows = wandb_reader.history(run_files[0])
        val_rows = [r for r in rows if "val/accuracy" in r]
        if len(val_rows) == 2:
            break
        time.sleep(0.5)
    assert len(val_rows) == 2
    logged = float(result.trainer.callback_metrics["val/accuracy"])
    assert val_rows[-1]["val/accuracy"] == pytest.approx(logged, abs=1e-6)
    assert any("train/loss" in r for r in rows)
    from lit_ft.report.history import read_history

    curves = read_history(tmp_path / "run", {})  # what `lit_ft report` draws of a run logged to W&B alone
    assert curves.source.startswith("wandb/") and curves.series["val/accuracy"][-1][1] == pytest.approx(logged)
    assert len(curves.series["val/accuracy"]) == 2 and "train/lr" in curves.series
    config = wandb_reader.config(run_files[0])
    assert config["task"] == "classification" and config["info"]["label_names"] == ["negative", "positive"]
    assert config["lit_ft_config"]["data"]["class_path"] == "lit_ft.tasks.classification.ClassificationData"


def test_fit_resume_continues_the_wandb_run(
    tmp_path: Path, tiny_bert: Path, sentiment_files: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    args = [*tiny_args(tmp_path / "run", tiny_bert, sentiment_files, logger="null"),
            "--trainer.logger", "lightning.pytorch.loggers.WandbLogger",
            "--trainer.logger.save_dir", str(tmp_path / "run"), "--trainer.logger.project", "lit_ft_test",
            "--export.enabled", "false"]
    first = cli("fit", "--config", "configs/quickstart.yaml", *args, "--trainer.max_epochs", "1")
    run_id = first.trainer.loggers[0].version
    first.trainer.loggers[0].experiment.finish()
    resumed = cli("fit", "--config", "configs/quickstart.yaml", *args, "--trainer.max_epochs", "2",
                  "--ckpt_path", "last")
    assert resumed.trainer.loggers[0].version == run_id
    assert resumed.trainer.current_epoch == 2 and resumed.trainer.global_step == 2 * first.trainer.global_step
    resumed.trainer.loggers[0].experiment.finish()
