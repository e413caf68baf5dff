"""The `dpo` task: its objectives equal TRL 1.16's (loss, gradients and logged rewards on the same batch), the
reference model's three sources agree, and a real fit learns a preference rule."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoTokenizer

from lit_ft.loading import LoadOptions
from lit_ft.tasks.preference.dpo import DPOTask

pytestmark = pytest.mark.usefixtures("single_thread")

BETA, SMOOTHING, GAMMA = 0.3, 0.2, 0.7


def pair_batch(pairs: list[tuple[list[int], list[int], list[int]]], pad: int) -> dict[str, Any]:
    """A pair batch as the data contract has it (chosen rows, then rejected rows, right padded), built by hand."""
    sequences = [p + c for p, c, _ in pairs] + [p + r for p, _, r in pairs]
    masks = [[0] * len(p) + [1] * len(c) for p, c, _ in pairs] + [[0] * len(p) + [1] * len(r) for p, _, r in pairs]
    width = max(len(s) for s in sequences)
    ids = torch.tensor([s + [pad] * (width - len(s)) for s in sequences])
    attention = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in sequences])
    completion = torch.tensor([m + [0] * (width - len(m)) for m in masks], dtype=torch.bool)
    return {"inputs": {"input_ids": ids, "attention_mask": attention}, "completion_mask": completion,
            "id": [str(i) for i in range(len(pairs))]}


def random_pairs(vocab: int, n: int = 3, seed: int = 0) -> list[tuple[list[int], list[int], list[int]]]:
    g = torch.Generator().manual_seed(seed)

    def ids(length: int) -> list[int]:
        return torch.randint(10, vocab, (length,), generator=g).tolist()

    return [(ids(3 + i), ids(2 + 2 * i), ids(4 - i)) for i in range(n)]


def lit_task(llama: Path, loss_type: str) -> tuple[DPOTask, torch.nn.Module]:
    task = DPOTask({}, loss_type=loss_type, beta=BETA, label_smoothing=SMOOTHING if loss_type == "robust" else 0.0,
                   simpo_gamma=GAMMA)
    return task, task.build_model(str(llama), LoadOptions())


def lit_step(task: DPOTask, model: torch.nn.Module, batch: dict[str, Any]) -> tuple[float, dict[str, float]]:
    """lit_ft's loss on `batch` (its gradients left on `model`) and its metrics."""
    outputs = task.forward(model, batch)
    loss = task.loss(outputs, batch)
    loss.backward()
    metrics = task.metrics()
    task.update_metrics(metrics, model, batch, outputs)
    return float(loss.detach()), {k: float(v) for k, v in metrics.compute().items()}


def trl_dpo(policy: torch.nn.Module, reference: torch.nn.Module, tokenizer: Any, loss_type: str, out: Path,
            batch: dict[str, Any]) -> tuple[float, dict[str, float]]:
    from trl import DPOConfig, DPOTrainer

    args = DPOConfig(output_dir=str(out), loss_type=[loss_type], beta=BETA, report_to="none", use_cpu=True,
                     bf16=False, label_smoothing=SMOOTHING if loss_type == "robust" else 0.0)
    data = Dataset.from_list([{"prompt": "a", "chosen": "b", "rejected": "c"}])
    trainer = DPOTrainer(policy, ref_model=reference, args=args, train_dataset=data, processing_class=tokenizer)
    inputs = {**batch["inputs"], "completion_mask": batch["completion_mask"].long()}
    loss = trainer._compute_loss(trainer.model, inputs, False)
    loss.backward()
    mode = "train" if trainer.model.training else "eval"
    return float(loss.detach()), {k: v[-1] for k, v in trainer._metrics[mode].items()}


def trl_reference_free(policy: torch.nn.Module, tokenizer: Any, loss_type: str, out: Path,
                       batch: dict[str, Any]) -> tuple[float, dict[str, float]]:
    from trl.experimental.cpo import CPOConfig, CPOTrainer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    data = Dataset.from_list([{"prompt": "a", "chosen": "b", "rejected": "c"}])
    common = {"output_dir": str(out), "beta": BETA, "report_to": "none", "use_cpu": True, "bf16": False}
    if loss_type == "simpo":
        trainer: Any = CPOTrainer(policy, args=CPOConfig(**common, loss_type="simpo", cpo_alpha=0.0, simpo_gamma=GAMMA),
                                  train_dataset=data, processing_class=tokenizer)
    else:
        trainer = ORPOTrainer(policy, args=ORPOConfig(**common), train_dataset=data, processing_class=tokenizer)
    ids, mask = batch["inputs"]["input_ids"], batch["inputs"]["attention_mask"]
    labels = ids.masked_fill(~batch["completion_mask"], -100)
    pairs = ids.size(0) // 2
    halves = {"chosen": slice(None, pairs), "rejected": slice(pairs, None)}
    inputs = {f"{side}_{key}": value[rows] for side, rows in halves.items()
              for key, value in (("input_ids", ids), ("attention_mask", mask), ("labels", labels))}
    loss, metrics = trainer.get_batch_loss_metrics(trainer.model, inputs)
    loss.backward()
    return float(loss.detach()), metrics


TRL_METRICS = ("rewards/accuracies", "rewards/margins", "rewards/chosen", "rewards/rejected", "logps/chosen",
               "logps/rejected")


@pytest.mark.parametrize("loss_type", ["sigmoid", "ipo", "hinge", "robust", "simpo", "orpo"])
def test_loss_and_gradients_equal_trl(llama: Path, tmp_path: Path, loss_type: str) -> None:
    """On the same batch, policy and reference, lit_ft's loss, every parameter's gradient and the logged rewards
    and log-probs equal TRL's (DPOTrainer, or CPOTrainer / ORPOTrainer for the reference-free objectives)."""
    task, model = lit_task(llama, loss_type)
    tokenizer = AutoTokenizer.from_pretrained(llama)
    batch = pair_batch(random_pairs(len(tokenizer)), tokenizer.pad_token_id)
    with torch.no_grad():  # a reference that differs from the policy, so the log-ratios are not all 0
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    theirs = copy.deepcopy(model)
    if task.reference is not None:
        reference = AutoModelForCausalLM.from_pretrained(llama)
        task.reference._copy = copy.deepcopy(reference).eval()
        trl_loss, trl_metrics = trl_dpo(theirs, reference, tokenizer, loss_type, tmp_path, batch)
    else:
        trl_loss, trl_metrics = trl_reference_free(theirs, tokenizer, loss_type, tmp_path, batch)
    model.train()
    loss, metrics = lit_step(task, model, batch)
    assert loss == pytest.approx(trl_loss, rel=1e-5, abs=1e-6)
    for name in TRL_METRICS:
        assert metrics[name] == pytest.approx(float(trl_metrics[name]), rel=1e-5, abs=1e-5), name
    theirs_grads = dict(theirs.named_parameters())
    compared = 0
    for name, p in model.named_parameters():
        other = theirs_grads[name].grad
        assert p.grad is not None and other is not None, name
        torch.testing.assert_close(p.grad, other, rtol=1e-5, atol=1e-5, msg=name)
        compared += 1
    assert compared == len(theirs_grads)
