"""Tiny finished runs for the commands that put a model to work (`lit_ft chat`, `lit_ft serve`'s page): a two-step
fit of each, with its best checkpoint and export, built once per test session (fixtures in conftest.py)."""

from __future__ import annotations

from pathlib import Path

from builders import write_sentiment_csvs
from helpers import QUIET, cli, tiny_args
from sft_fixtures import write_standins

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
TWO_STEPS = ["--trainer.max_steps", "2", "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1",
             "--trainer.precision", "32-true"]


def fit_chat_run(root: Path, backbone: Path) -> Path:
    """The sft_chat recipe on the tiny Llama and the chat stand-in rows."""
    files = write_standins(root / "data")
    cli("fit", "--config", CONFIGS / "sft_chat.yaml", "--model.backbone", backbone,
        "--data.init_args.source.train", files["chat"], "--data.init_args.max_length", "256",
        "--model.task_options.max_new_tokens", "4", "--trainer.default_root_dir", root / "run",
        "--trainer.logger", "false", *QUIET, *TWO_STEPS)
    return root / "run"


def fit_classifier_run(root: Path, backbone: Path) -> Path:
    """The quickstart recipe on the tiny BERT and the two-class sentiment files."""
    files = write_sentiment_csvs(root / "data", n_train=16, n_eval=8)
    cli("fit", "--config", CONFIGS / "quickstart.yaml", *tiny_args(root / "run", backbone, files), *TWO_STEPS)
    return root / "run"
