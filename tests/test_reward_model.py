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


GOOD, BAD = ["good", "great", "wonderful", "fun"], ["bad", "awful", "dull", "boring"]


def hh_pairs(n: int, seed: int) -> list[dict[str, str]]:
    """Anthropic HH-RLHF-shaped pairs (implicit prompt): the chosen answer praises, the rejected one pans."""
    import random

    r = random.Random(seed)
    rows = []
    for _ in range(n):
        prompt = f"\n\nHuman: was the {r.choice(['film', 'movie', 'story'])} {r.choice(['good', 'bad'])}?\n\nAssistant:"
        rows.append({"chosen": f"{prompt} it was {r.choice(GOOD)}", "rejected": f"{prompt} it was {r.choice(BAD)}"})
    return rows


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.parametrize("family", ["bert", "llama"])
def test_metrics_predictions_and_export_agree(family: str, tiny_bert: Path, llama: Path, tmp_path: Path) -> None:
    """fit -> test -> predict -> export on a real Trainer: the test metrics equal the per-pair records, and the
    export scores each text in `pipeline("text-classification")` as `predict` did (a decoder's text ended with EOS,
    as its training sequences are)."""
    from helpers import QUIET, cli
    from transformers import pipeline

    backbone = tiny_bert if family == "bert" else llama
    texts = ["\n\nHuman: was the film good?\n\nAssistant: it was great", "the plot was dull", "hello world"]
    files = {"train": write_jsonl(hh_pairs(32, 0), tmp_path / "train.jsonl"),
             "validation": write_jsonl(hh_pairs(8, 1), tmp_path / "validation.jsonl"),
             "test": write_jsonl(hh_pairs(12, 2), tmp_path / "test.jsonl"),
             "predict": write_jsonl([{"text": t} for t in texts], tmp_path / "predict.jsonl")}
    root = tmp_path / "run"
    args = ["--model.task", "reward_model", "--model.backbone", str(backbone), "--model.learning_rate", "1e-3",
            "--data.class_path", "lit_ft.tasks.preference.data.PreferenceData", "--data.init_args.batch_size", "8",
            *[a for split, f in files.items() for a in (f"--data.init_args.source.{split}", f)],
            "--trainer.default_root_dir", str(root), "--trainer.logger", "false", "--trainer.accelerator", "cpu",
            "--seed_everything", "0", *QUIET]
    cli("fit", *args, "--trainer.max_steps", "4", "--trainer.val_check_interval", "4")
    tested = cli("test", *args, "--ckpt_path", "best").trainer.callback_metrics
    pairs = read_jsonl(root / "test_predictions.jsonl")
    assert len(pairs) == 12
    assert tested["test/accuracy"].item() == pytest.approx(sum(p["correct"] for p in pairs) / 12, abs=1e-6)
    margins = [p["chosen_score"] - p["rejected_score"] for p in pairs]
    assert tested["test/margin"].item() == pytest.approx(sum(margins) / 12, abs=1e-5)
    assert all(p["correct"] == (p["chosen_score"] > p["rejected_score"]) for p in pairs)
    cli("predict", *args, "--ckpt_path", "best")
    scores = [r["score"] for r in read_jsonl(root / "predictions.jsonl")]
    assert len(set(scores)) == 3  # the texts score apart: not a constant head
    reward = pipeline("text-classification", model=str(root / "export"), function_to_apply="none")
    end = reward.tokenizer.eos_token if family == "llama" else ""
    piped = [out["score"] for out in reward([t + end for t in texts])]
    assert piped == pytest.approx(scores, abs=1e-5)
    assert [o["label"] for o in reward(texts)] == ["reward"] * 3


def test_the_recipe_holds_out_a_seeded_tenth_of_hh_rlhf_for_validation() -> None:
    import yaml
    from builders import shared_data

    from lit_ft.source import DataSource
    from lit_ft.tasks.preference.data import PreferenceData

    shared_data("hh_rlhf_harmless")
    recipe = yaml.safe_load((Path(__file__).resolve().parents[1] / "configs" / "reward_hh.yaml").read_text())
    assert recipe["model"]["task"] == "reward_model"
    init_args = dict(recipe["data"]["init_args"])
    source = {**init_args.pop("source"), "train": str(shared_data("hh_rlhf_harmless") / "train.jsonl")}

    def split_ids(split: str) -> list[str]:
        raw = PreferenceData(source=DataSource(**source), **init_args).raw(split)
        assert raw is not None
        return list(raw["id"])

    train, validation = split_ids("train"), split_ids("validation")
    assert (len(train), len(validation)) == (1620, 180) and not set(train) & set(validation)
    assert split_ids("validation") == validation  # seeded: every run validates on the same pairs
