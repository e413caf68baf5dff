"""A third-party regression plugin (public API only), loaded with `--plugins tests/score_plugin.py` by
tests/test_plugin_ddp.py: a score per text, Pearson's r as a metric, and a forward pass that reads the [CLS] hidden
state instead of the pooler, so the pooler gets no gradient and the task declares DDP's `find_unused_parameters`.

`score_extra` is the same task with a mistake a plugin can make: a module added to the Transformers model outside
its architecture, which the export saves but `from_pretrained` drops."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.regression import MeanSquaredError, PearsonCorrCoef
from transformers import AutoModelForSequenceClassification

from lit_ft import Batch, LoadOptions, Task, TaskDataModule, load_pretrained


class ScoreData(TaskDataModule):
    """Rows with a text and a numeric score.

    Args:
        text_column: Column with the text.
        label_column: Column with the score (not needed to predict).
        **kwargs: Source, tokenizer and batching settings of `TaskDataModule`.
    """

    task_name = "score"

    def __init__(self, text_column: str = "text", label_column: str = "score", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.text_column, self.label_column = text_column, label_column

    def encode(self, rows: dict[str, list[Any]], split: str) -> dict[str, list[Any]]:
        texts = self.texts(rows, split, "text_column", self.text_column)
        out = dict(self.tokenizer(texts, truncation=True, max_length=self.max_length))
        if self.label_column in rows:
            out["labels"] = [float(v) for v in rows[self.label_column]]
        return out


class ExtraScoreData(ScoreData):
    task_name = "score_extra"


class Pearson(PearsonCorrCoef):
    higher_is_better = True


class ScoreTask(Task):
    name = "score"
    datamodule = ScoreData
    ddp_kwargs = {"find_unused_parameters": True}  # the pooler runs in forward but gets no gradient

    def build_model(self, backbone: str, load: LoadOptions) -> nn.Module:
        return load_pretrained(AutoModelForSequenceClassification, backbone, load, num_labels=1,
                               problem_type="regression")

    def forward(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor | None]:
        inputs = dict(batch["inputs"])
        labels = inputs.pop("labels", None)
        hidden = model.base_model(**inputs).last_hidden_state[:, 0]  # (batch, hidden): [CLS], not the pooler
        scores = model.classifier(hidden).squeeze(-1)  # (batch,)
        loss = nn.functional.mse_loss(scores, labels.float()) if labels is not None else None
        return {"scores": scores, "loss": loss}

    def loss(self, outputs: Any, batch: Batch) -> torch.Tensor:
        return outputs["loss"]

    def metrics(self) -> MetricCollection:
        return MetricCollection({"pearson": Pearson(), "mse": MeanSquaredError()})

    def update_metrics(self, metrics: MetricCollection, model: nn.Module, batch: Batch, outputs: Any) -> None:
        metrics.update(outputs["scores"].float(), batch["inputs"]["labels"].float())

    def predictions(self, model: nn.Module, batch: Batch, outputs: Any) -> list[dict[str, Any]]:
        return [{"id": i, "score": s} for i, s in zip(batch["id"], outputs["scores"].tolist(), strict=True)]

    def monitor(self) -> str:
        return "mse"


class ExtraScoreTask(ScoreTask):
    name = "score_extra"
    datamodule = ExtraScoreData

    def build_model(self, backbone: str, load: LoadOptions) -> nn.Module:
        model = super().build_model(backbone, load)
        model.calibration = nn.Linear(1, 1)  # outside BertForSequenceClassification: saved, then dropped on loading
        return model
