"""NEFTune (`model.neftune_noise_alpha`): noise on the input embeddings while training only, of Transformers'
magnitude alpha / sqrt(L * d); validation and prediction of a checkpoint give the same results with the option as
without it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from helpers import QUIET, cli
from sft_fixtures import write_jsonl, write_standins

from lit_ft.io import read_jsonl

ROOT = Path(__file__).resolve().parents[1]
ALPHA = 5.0
pytestmark = pytest.mark.usefixtures("single_thread")


def _args(verb: str, root: Path, llama: Path, files: dict[str, str], *extra: str) -> list[Any]:
    return [verb, "--config", ROOT / "configs" / "sft_chat.yaml", "--model.backbone", llama,
            "--data.init_args.source.train", files["chat"], "--data.init_args.source.validation", files["chat"],
            "--data.init_args.source.predict", files["predict"], "--data.init_args.max_length", "128",
            "--model.task_options.max_new_tokens", "4", "--model.task_options.generate_examples", "4",
            "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1", "--trainer.default_root_dir", root,
            "--trainer.logger", "false", "--export.enabled", "false", *QUIET, *extra]


def _embeddings(module: Any, input_ids: torch.Tensor, training: bool) -> torch.Tensor:
    module.train(training)
    with torch.no_grad():
        return module.model.get_input_embeddings()(input_ids)


def test_noise_only_while_training_at_the_formulas_magnitude(tmp_path: Path, llama: Path) -> None:
    files = write_standins(tmp_path / "data")
    files["predict"] = write_jsonl([{"id": f"q{i}", "messages": [{"role": "user", "content": f"hi {i}"}]}
                                    for i in range(3)], tmp_path / "predict.jsonl")
    option = ("--model.neftune_noise_alpha", str(ALPHA))
    noisy = cli(*_args("fit", tmp_path / "noisy", llama, files, *option))
    plain = cli(*_args("fit", tmp_path / "plain", llama, files))
    # the same seed and batches: the training losses differ only through the noise
    assert noisy.trainer.callback_metrics["train/loss"] != plain.trainer.callback_metrics["train/loss"]

    input_ids = next(iter(noisy.datamodule.train_dataloader()))["inputs"]["input_ids"]  # (batch, seq)
    clean = _embeddings(noisy.model, input_ids, training=False)
    assert torch.equal(_embeddings(noisy.model, input_ids, training=False), clean)  # eval: no noise
    noise = _embeddings(noisy.model, input_ids, training=True) - clean
    bound = ALPHA / math.sqrt(input_ids.shape[1] * clean.shape[2])  # alpha / sqrt(L * d)
    assert noise.abs().max() <= bound * (1 + 1e-5)
    assert noise.abs().max() > 0.95 * bound and noise.abs().mean() == pytest.approx(bound / 2, rel=0.05)
    assert torch.equal(_embeddings(plain.model, input_ids, training=True),
                       _embeddings(plain.model, input_ids, training=False))  # no option: no noise

    # validation and prediction of one checkpoint: the same with the option as without
    runs = {}
    for name, extra in (("with", option), ("without", ())):
        root = tmp_path / "noisy"
        validated = cli(*_args("validate", root, llama, files, "--ckpt_path", "best", *extra))
        cli(*_args("predict", root, llama, files, "--ckpt_path", "best", *extra))
        runs[name] = ({k: float(v) for k, v in validated.trainer.callback_metrics.items()},
                      read_jsonl(root / "predictions.jsonl"))
    assert runs["with"] == runs["without"] and runs["with"][0] and len(runs["with"][1]) == 3
