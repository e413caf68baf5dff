"""lit_ft's defaults train exactly as the HF Trainer's on identical batches from identical weights.

The seed-fragile NER runs (a fresh head stuck on "everything is O") came from the one difference this finds: the
HF Trainer clips the gradient norm at 1.0 and lit_ft did not. Fine-tuning gradients are above 1 on most steps,
so every update differed (docs/training.md has the step-by-step comparison on CoNLL-2003).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback
from test_token_classification import QUIET, RECIPE, write_conll
from torch.utils.data import DataLoader
from transformers import AutoModelForTokenClassification, Trainer, TrainingArguments

from lit_ft.commands.cli import run
from lit_ft.tasks.token_classification.schemes import label_set

LR, STEPS, WARMUP = 5e-3, 6, 2


class BatchRecorder(Callback):
    """The model inputs of every training batch, and the gradient norm before clipping."""

    def __init__(self) -> None:
        self.batches: list[dict[str, torch.Tensor]] = []
        self.norms: list[float] = []

    def on_train_batch_start(self, trainer: Any, module: Any, batch: Any, batch_idx: int) -> None:
        self.batches.append({k: v.clone() for k, v in batch["inputs"].items()})

    def on_before_optimizer_step(self, trainer: Any, module: Any, optimizer: Any) -> None:
        grads = [p.grad.norm() for p in module.parameters() if p.grad is not None]
        self.norms.append(float(torch.linalg.vector_norm(torch.stack(grads))))


def _initial_model(tagger_bert: Path, out: Path) -> Path:
    names = label_set(["LOC", "ORG", "PER"], "IOB2")
    torch.manual_seed(0)
    model = AutoModelForTokenClassification.from_pretrained(
        tagger_bert, num_labels=len(names), id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)  # dropout off: the two sides' RNG streams differ
    model.save_pretrained(out)
    for name in ("vocab.txt", "tokenizer.json", "tokenizer_config.json"):
        (out / name).write_bytes((tagger_bert / name).read_bytes())
    return out


def _hf_trainer(backbone: Path, batches: list[dict[str, torch.Tensor]], out: Path) -> torch.nn.Module:
    class SameBatches(Trainer):
        def get_train_dataloader(self) -> DataLoader:
            return DataLoader(batches, batch_size=1, collate_fn=lambda items: items[0])

    model = AutoModelForTokenClassification.from_pretrained(backbone)
    args = TrainingArguments(output_dir=str(out), learning_rate=LR, weight_decay=0.01, warmup_steps=WARMUP,
                             max_steps=STEPS, lr_scheduler_type="linear", save_strategy="no", report_to=[],
                             use_cpu=True, disable_tqdm=True, seed=0)  # defaults otherwise: max_grad_norm 1.0
    SameBatches(model=model, args=args, train_dataset=batches).train()
    return model


def test_defaults_match_the_hf_trainer_step_for_step(tagger_bert: Path, tmp_path: Path) -> None:
    backbone = _initial_model(tagger_bert, tmp_path / "init")
    train = write_conll(tmp_path / "train.conll", 96, 0)
    result = run(["fit", "--config", str(RECIPE), *QUIET, "--model.backbone", str(backbone),
                  "--model.learning_rate", str(LR), "--model.warmup", str(WARMUP),
                  "--data.init_args.source.hub", "null", "--data.init_args.source.train", train,
                  "--data.init_args.source.validation", train, "--data.init_args.source.test", "null",
                  "--data.init_args.source.predict", "null", "--data.init_args.tag_scheme", "IOB1",
                  "--data.init_args.label_names", json.dumps(label_set(["LOC", "ORG", "PER"], "IOB2")),
                  "--data.init_args.batch_size", "16", "--trainer.max_steps", str(STEPS),
                  "--trainer.default_root_dir", str(tmp_path / "run"), "--export.enabled", "false",
                  "--trainer.callbacks+=test_hf_parity.BatchRecorder"])
    assert result is not None
    recorder = next(cb for cb in result.trainer.callbacks if isinstance(cb, BatchRecorder))
    assert len(recorder.batches) == STEPS
    assert max(recorder.norms[1:]) > 1.5, "the job must have gradients above the clipping norm to test anything"
    lit = result.trainer.lightning_module.model.state_dict()
    hf = _hf_trainer(backbone, recorder.batches, tmp_path / "hf").state_dict()
    diff = sum(float((lit[k] - hf[k]).norm() ** 2) for k in hf) ** 0.5
    update = sum(float((AutoModelForTokenClassification.from_pretrained(backbone).state_dict()[k] - hf[k]).norm() ** 2)
                 for k in hf) ** 0.5
    assert diff < 1e-4 * update, f"lit_ft ended {diff:.3g} from the HF Trainer's weights (its update: {update:.3g})"
