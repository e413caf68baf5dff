"""The multiple-choice task: `AutoModelForMultipleChoice` scores every (context, ending) pair, softmax over choices."""

from __future__ import annotations

from typing import Any

import torch
from lit_ft import Batch, LoadOptions, Task, load_pretrained
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy
from transformers import AutoModelForMultipleChoice

from lit_ft_multiple_choice.data import MultipleChoiceData


class MultipleChoiceTask(Task):
    """Pick the right ending out of N (SWAG, HellaSwag, ARC-style data).

    Takes no `task_options`.

    Args:
        info: `num_choices` from the data (saved with the checkpoint).
    """

    name = "multiple_choice"
    datamodule = MultipleChoiceData
    pipeline_tag = None  # Transformers has a multiple-choice head but no multiple-choice pipeline
    peft_task_type = None  # peft has no multiple-choice task type; LoRA wraps the model generically

    def __init__(self, info: dict[str, Any]) -> None:
        super().__init__(info)
        self.num_choices: int = int(info["num_choices"])

    def build_model(self, backbone: str, load: LoadOptions) -> nn.Module:
        # the head is one score per (batch * choices) sequence; the number of choices is not a config setting
        return load_pretrained(AutoModelForMultipleChoice, backbone, load)

    def metrics(self) -> MetricCollection:
        return MetricCollection({"accuracy": MulticlassAccuracy(self.num_choices, average="micro")})

    def update_metrics(self, metrics: MetricCollection, model: nn.Module, batch: Batch, outputs: Any) -> None:
        metrics.update(outputs.logits.float(), batch["inputs"]["labels"])  # logits: (batch, choices)

    def predictions(self, model: nn.Module, batch: Batch, outputs: Any) -> list[dict[str, Any]]:
        probs = torch.softmax(outputs.logits.float(), dim=-1)
        best = probs.argmax(dim=-1).tolist()
        return [
            {"id": row_id, "label": k, "ending": endings[k], "probabilities": p}
            for row_id, k, endings, p in zip(batch["id"], best, batch["endings"], probs.tolist(), strict=True)
        ]

    def monitor(self) -> str:
        return "accuracy"
