"""The `reward_model` task: its loss equals TRL `RewardTrainer`'s on the same model and batch, its metrics equal an
independent computation, and a run's predictions equal what its export scores in `pipeline("text-classification")`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from transformers import AutoTokenizer

from lit_ft.loading import LoadOptions
from lit_ft.tasks.preference.pairwise import pair_metrics, split_pairs
from lit_ft.tasks.preference.reward import RewardModelTask

pytestmark = pytest.mark.usefixtures("single_thread")


def pair_batch(pad_id: int, vocab: int, pairs: int = 4, margin: bool = False, seed: int = 0) -> dict[str, Any]:
    """A pair batch as `PreferenceData` makes one: chosen rows first, then the rejected ones, right padded."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 12, (2 * pairs,), generator=g).tolist()
    width = max(lengths)
    input_ids = torch.full((2 * pairs, width), pad_id)
    attention_mask = torch.zeros((2 * pairs, width), dtype=torch.long)
    for i, n in enumerate(lengths):
        input_ids[i, :n] = torch.randint(5, vocab, (n,), generator=g)
        input_ids[i, :n][input_ids[i, :n] == pad_id] = 5
        attention_mask[i, :n] = 1
    batch: dict[str, Any] = {"inputs": {"input_ids": input_ids, "attention_mask": attention_mask},
                             "completion_mask": attention_mask.bool(), "id": [str(i) for i in range(pairs)]}
    if margin:
        batch["margin"] = torch.rand(pairs, generator=g) * 2
    return batch


def trl_loss(model: torch.nn.Module, tokenizer: Any, batch: dict[str, Any], center: float | None,
             out: Path) -> torch.Tensor:
    """`RewardTrainer.compute_loss` on `model` and the batch as TRL's own collator lays it out."""
    from datasets import Dataset
    from trl import RewardConfig, RewardTrainer

    args = RewardConfig(output_dir=str(out), center_rewards_coefficient=center, report_to=[], use_cpu=True,
                        disable_dropout=False)
    data = Dataset.from_dict({"chosen_ids": [[1, 2]], "rejected_ids": [[1, 3]]})
    trainer = RewardTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    inputs = dict(batch["inputs"])
    if "margin" in batch:
        inputs["margin"] = batch["margin"]
    return trainer.compute_loss(model, inputs)


@pytest.mark.parametrize("margin", [False, True], ids=["no_margin", "margin"])
@pytest.mark.parametrize("center", [None, 0.01], ids=["uncentred", "centred"])
@pytest.mark.parametrize("family", ["bert", "llama"])
def test_loss_equals_trl_reward_trainer(family: str, margin: bool, center: float | None, tiny_bert: Path,
                                        llama: Path, tmp_path: Path) -> None:
    backbone = tiny_bert if family == "bert" else llama
    task = RewardModelTask({}, center_rewards_coefficient=center)
    torch.manual_seed(0)
    model = task.build_model(str(backbone), LoadOptions())
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    batch = pair_batch(tokenizer.pad_token_id, len(tokenizer), margin=margin)
    expected = trl_loss(model, tokenizer, batch, center, tmp_path)
    model.train()
    ours = task.loss(task.forward(model, batch), batch)
    assert abs(ours.item() - expected.item()) < 1e-5
    ours.backward()
    ours_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad()
    trl_loss(model, tokenizer, batch, center, tmp_path).backward()
    theirs = [p.grad for p in model.parameters() if p.grad is not None]
    assert len(ours_grads) == len(theirs) > 0
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(ours_grads, theirs, strict=True))


def test_pair_metrics_equal_an_independent_computation() -> None:
    metrics = pair_metrics()
    batches = [torch.tensor([1.0, 0.5, 2.0, 0.5, -1.0, 2.0]), torch.tensor([0.0, 3.0, 3.0, 0.0])]
    for scores in batches:
        metrics.update(*split_pairs(scores))
    chosen = [1.0, 0.5, 2.0, 0.0, 3.0]
    rejected = [0.5, -1.0, 2.0, 3.0, 0.0]
    values = {k: v.item() for k, v in metrics.compute().items()}
    assert values["accuracy"] == pytest.approx(sum(c > r for c, r in zip(chosen, rejected, strict=True)) / 5)
    assert values["accuracy"] == pytest.approx(0.6)  # the tie (2.0, 2.0) is wrong, as TRL counts it
    assert values["chosen"] == pytest.approx(sum(chosen) / 5)
    assert values["rejected"] == pytest.approx(sum(rejected) / 5)
    assert values["margin"] == pytest.approx((sum(chosen) - sum(rejected)) / 5)


def test_predictions_score_each_text_and_each_pair() -> None:
    task = RewardModelTask({})

    class Out:
        logits = torch.tensor([[0.5], [2.0], [1.0], [1.0]])

    pairs = task.predictions(torch.nn.Identity(), {"id": ["a", "b"]}, Out())
    assert pairs == [{"id": "a", "chosen_score": 0.5, "rejected_score": 1.0, "correct": False},
                     {"id": "b", "chosen_score": 2.0, "rejected_score": 1.0, "correct": True}]
    texts = task.predictions(torch.nn.Identity(), {"id": ["a", "b", "c", "d"]}, Out())
    assert [r["score"] for r in texts] == [0.5, 2.0, 1.0, 1.0]


def write_jsonl(rows: list[dict[str, Any]], path: Path) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)
