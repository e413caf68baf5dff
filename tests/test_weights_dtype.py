"""A backbone saved in bf16 (as most hub LLMs are) trains with fp32 weights under full and mixed precision.

Transformers 5 loads a checkpoint in its stored dtype by default; these runs check that the precision decides
instead: fp32 master weights for `32-true` and `bf16-mixed` (updates below bf16's resolution survive), bf16 weights
for `bf16-true`, and fp32 again when a checkpoint is loaded back for `test`/`predict` without a trainer.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from helpers import cli, tiny_args
from lightning.pytorch import Callback, LightningModule, Trainer
from sft_fixtures import chat_rows, make_causal_lm, write_jsonl
from transformers import AutoModel, AutoModelForCausalLM

from lit_ft.module import FineTuner
from lit_ft.weights_dtype import weights_dtype

LR = 1e-5  # Adam's first step moves every weight by about lr: far below bf16's resolution for weights near 0.1-1


QUIET = "--trainer.logger false --trainer.enable_progress_bar false --trainer.enable_model_summary false".split()
ONE_STEP = [
    "--trainer.max_steps",
    "1",
    "--model.learning_rate",
    str(LR),
    "--model.warmup",
    "0",
    "--export.enabled",
    "false",
]


def saved_in_bf16(model_dir: Path, out: Path, auto: type = AutoModel) -> Path:
    """A copy of `model_dir` whose weights are stored in bf16, as a hub checkpoint would be."""
    shutil.copytree(model_dir, out)
    auto.from_pretrained(model_dir, dtype=torch.bfloat16).save_pretrained(out)
    assert auto.from_pretrained(out).dtype == torch.bfloat16, "the fixture must be a bf16 checkpoint"
    return out


HOOK = "test_weights_dtype.Weights"


class Weights(Callback):
    """The backbone's parameter dtypes when training starts, and a copy of its weights to compare after."""

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.dtypes = {p.dtype for p in pl_module.parameters()}
        self.start = {n: p.detach().float().clone() for n, p in pl_module.named_parameters() if p.requires_grad}


@pytest.mark.parametrize(
    ("precision", "expected"),
    [("32-true", torch.float32), ("bf16-mixed", torch.float32), ("bf16-true", torch.bfloat16)],
)
def test_precision_decides_the_dtype_of_a_bf16_checkpoint(
    precision: str, expected: torch.dtype, tmp_path: Path, tiny_bert: Path, sentiment_files: dict
) -> None:
    backbone = saved_in_bf16(tiny_bert, tmp_path / "bf16_bert")
    args = tiny_args(tmp_path / "run", backbone, sentiment_files)
    run = cli("fit", "--config", "configs/quickstart.yaml", *args, *ONE_STEP, "--trainer.precision", precision)
    module = run.model
    assert {p.dtype for p in module.parameters()} == {expected}
    if expected == torch.float32:  # the checkpoint, and the model loaded back from it, keep fp32
        assert module.trainer.global_step == 1
        ckpt = next((tmp_path / "run" / "checkpoints").glob("*.ckpt"))
        state = torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]
        assert {v.dtype for k, v in state.items() if v.is_floating_point()} == {torch.float32}
        loaded = FineTuner.load_from_checkpoint(ckpt)  # `test`/`predict` build without a trainer
        assert {p.dtype for p in loaded.parameters()} == {torch.float32}
        for name, value in loaded.state_dict().items():
            assert torch.equal(value, state[name]), f"{name} lost precision on loading"


def test_fp32_update_below_bf16_resolution_survives(tmp_path: Path, tiny_bert: Path, sentiment_files: dict) -> None:
    """The update of a single small step is kept under bf16-mixed, as it would not be in bf16 weights."""
    backbone = saved_in_bf16(tiny_bert, tmp_path / "bf16_bert")
    args = tiny_args(tmp_path / "run", backbone, sentiment_files)
    extra = ["--trainer.precision", "bf16-mixed", "--trainer.limit_val_batches", "0", "--model.weight_decay", "0"]
    run = cli("fit", "--config", "configs/quickstart.yaml", *args, *ONE_STEP, *extra, f"--trainer.callbacks+={HOOK}")
    weights = next(cb for cb in run.trainer.callbacks if isinstance(cb, Weights))
    assert weights.dtypes == {torch.float32}
    after = dict(run.model.named_parameters())
    name = "model.bert.encoder.layer.0.attention.self.query.weight"
    moved = (after[name].detach() - weights.start[name]).abs()
    assert 0 < float(moved.max()) < 1e-4, "one Adam step of lr 1e-5 moves each weight by about 1e-5"
    rounded = after[name].detach().bfloat16().float() - weights.start[name]
    assert int((moved > 0).sum()) > 2 * int((rounded != 0).sum()), "in bf16 most of the update would be lost"


def test_sft_llama_stored_in_bf16_trains_fp32_under_bf16_mixed(tmp_path: Path) -> None:
    backbone = saved_in_bf16(make_causal_lm(tmp_path / "llama"), tmp_path / "bf16_llama", AutoModelForCausalLM)
    train = write_jsonl(chat_rows(8), tmp_path / "train.jsonl")
    data = ["--data.init_args.source.train", train, "--data.init_args.source.validation", train]
    extra = ["--trainer.precision", "bf16-mixed", "--trainer.limit_val_batches", "0", "--trainer.default_root_dir"]
    run = cli(
        "fit",
        "--config",
        "configs/sft_chat.yaml",
        "--model.backbone",
        backbone,
        *data,
        *ONE_STEP,
        *QUIET,
        *extra,
        tmp_path / "run",
        f"--trainer.callbacks+={HOOK}",
    )
    weights = next(cb for cb in run.trainer.callbacks if isinstance(cb, Weights))
    assert weights.dtypes == {torch.float32}


def test_weights_dtype_rule() -> None:
    assert weights_dtype(None) == torch.float32
    assert {weights_dtype(p) for p in ("32-true", "16-mixed", "bf16-mixed", "64-true")} == {torch.float32}
    assert (weights_dtype("bf16-true"), weights_dtype("16-true")) == (torch.bfloat16, torch.float16)
