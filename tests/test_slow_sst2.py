"""The packaged MiniLM fine-tuned on 2,000 real SST-2 examples beats 0.75 dev accuracy (slow)."""

from __future__ import annotations

from pathlib import Path

import pytest
from builders import shared_data
from helpers import QUIET, cli


@pytest.mark.slow
def test_minilm_learns_sst2(tmp_path: Path) -> None:
    data = shared_data("sst2")
    train = tmp_path / "train2000.tsv"
    train.write_text("".join((data / "train_first10000.tsv").read_text().splitlines(keepends=True)[:2001]))
    result = cli(
        "fit", "--config", "configs/sentiment_sst2.yaml", "--data.init_args.source.hub", "null",
        "--data.init_args.source.train", train, "--data.init_args.source.validation", data / "glue_dev.tsv",
        "--data.init_args.id_column", "id", "--data.init_args.max_length", "64",
        "--trainer.default_root_dir", tmp_path / "run", "--trainer.logger", "false", "--trainer.accelerator", "cpu",
        "--trainer.val_check_interval", "1.0", "--export.enabled", "false", "--model.learning_rate", "1e-4", *QUIET,
    )
    accuracy = float(result.trainer.checkpoint_callback.best_model_score)
    assert accuracy > 0.75, f"dev accuracy {accuracy:.3f}"
