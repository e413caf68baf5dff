"""The `reward_model` task: a one-output scoring head trained on preference pairs with the Bradley-Terry loss.

The model is Transformers' `AutoModelForSequenceClassification` with one output (the reward), on an encoder or a
decoder backbone (which scores the last non-pad token), so an export loads in `pipeline("text-classification")`
and scores a text as `lit_ft predict` does. The loss is TRL `RewardTrainer`'s: -log sigmoid(r_chosen - r_rejected
- margin) over the batch's pairs, plus `center_rewards_coefficient` * mean((r_chosen + r_rejected)^2).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics import MetricCollection
from transformers import AutoConfig, AutoModelForSequenceClassification

from lit_ft.backbone import load_tokenizer, pad_with_eos
from lit_ft.domains import NonNegativeFloat
from lit_ft.loading import LoadOptions, load_pretrained
from lit_ft.task import Batch, Task
from lit_ft.tasks.preference.data import PreferenceData
from lit_ft.tasks.preference.pairwise import pair_metrics, split_pairs

LABEL = "reward"  # the export's one label name: `pipeline` answers `{"label": "reward", "score": <reward>}`


def bradley_terry_loss(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | None = None,
                       center_rewards_coefficient: float | None = None) -> torch.Tensor:
    """The pairwise loss of a reward model, as TRL's `RewardTrainer` computes it.

    Args:
        chosen: Rewards of the chosen sequences, (pairs,).
        rejected: Rewards of the rejected sequences of the same pairs, (pairs,).
        margin: How far each chosen reward should lie above its rejected one, (pairs,); none: 0.
        center_rewards_coefficient: Weight of mean((chosen + rejected)^2), which keeps rewards centred on 0.
    """
    difference = chosen - rejected if margin is None else chosen - rejected - margin.to(chosen.dtype)
    loss = -F.logsigmoid(difference).mean()
    if center_rewards_coefficient is not None:
        loss = loss + center_rewards_coefficient * torch.mean((chosen + rejected) ** 2)
    return loss


def rewards(outputs: Any) -> torch.Tensor:
    """One reward per sequence, (sequences,), in fp32 (the loss and the metrics stay exact under bf16 autocast)."""
    return outputs.logits.squeeze(-1).float()


def without_dropout(model: nn.Module) -> nn.Module:
    """`model` with every dropout layer's rate set to 0 (TRL's `disable_dropout_in_model`)."""
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    return model


class RewardModelTask(Task):
    """A reward model: one score per text, trained so that each pair's chosen text scores above its rejected one.

    Args:
        info: What the data tells the model (nothing the model's shape depends on).
        center_rewards_coefficient: Adds this weight times mean((r_chosen + r_rejected)^2) to the loss, so rewards
            stay centred on 0 (TRL's option of the same name; 0.01 is the usual value); null: off.
        disable_dropout: Train with every dropout rate at 0, as TRL's `RewardTrainer` does by default.
        monitor: What checkpointing and early stopping watch: `accuracy` (pairwise accuracy) or `loss`.
    """

    name = "reward_model"
    datamodule = PreferenceData
    pipeline_tag = "text-classification"
    peft_task_type = "SEQ_CLS"
    onnx_outputs = ("logits",)
    predictions_at_test = True
    sequences_per_example = 2  # a pair's chosen and rejected texts run in one batch: `lit_ft estimate` counts both

    def __init__(self, info: dict[str, Any], center_rewards_coefficient: NonNegativeFloat | None = None,
                 disable_dropout: bool = True, monitor: Literal["accuracy", "loss"] = "accuracy") -> None:
        super().__init__(info)
        self.center_rewards_coefficient = center_rewards_coefficient
        self.disable_dropout = disable_dropout
        self._monitor = monitor

    def build_model(self, backbone: str, load: LoadOptions) -> nn.Module:
        # problem_type regression: `pipeline("text-classification")` then gives the raw reward, not its sigmoid
        config = AutoConfig.from_pretrained(backbone, num_labels=1, id2label={0: LABEL}, label2id={LABEL: 0},
                                            problem_type="regression")
        if getattr(config, "pad_token_id", None) is None:  # decoders score the last token before the padding
            config.pad_token_id = pad_with_eos(load_tokenizer(backbone)).pad_token_id
        model = load_pretrained(AutoModelForSequenceClassification, backbone, load, config=config)
        return without_dropout(model) if self.disable_dropout else model

    def loss(self, outputs: Any, batch: Batch) -> torch.Tensor:
        chosen, rejected = split_pairs(rewards(outputs))
        return bradley_terry_loss(chosen, rejected, batch.get("margin"), self.center_rewards_coefficient)

    def loss_weight(self, batch: Batch) -> int:
        return len(batch["id"])  # the loss is a mean over the batch's pairs

    def metrics(self) -> MetricCollection:
        return pair_metrics()

    def update_metrics(self, metrics: MetricCollection, model: nn.Module, batch: Batch, outputs: Any) -> None:
        metrics.update(*split_pairs(rewards(outputs)))

    def predictions(self, model: nn.Module, batch: Batch, outputs: Any) -> list[dict[str, Any]]:
        """A `score` per text (predict); per pair at test: both scores and whether the chosen one is higher."""
        scores = rewards(outputs)
        ids = batch["id"]
        if scores.shape[0] != 2 * len(ids):
            return [{"id": i, "score": s} for i, s in zip(ids, scores.tolist(), strict=True)]
        chosen, rejected = (s.tolist() for s in split_pairs(scores))
        return [{"id": i, "chosen_score": c, "rejected_score": r, "correct": c > r}
                for i, c, r in zip(ids, chosen, rejected, strict=True)]

    def monitor(self) -> str:
        return self._monitor

    def usage(self, model_id: str) -> str:
        return ('from transformers import pipeline\n\n'
                f'reward = pipeline("text-classification", model="{model_id}", function_to_apply="none")\n'
                'print(reward("\\n\\nHuman: Hello\\n\\nAssistant: Hi! How can I help?")[0]["score"])')
