"""The token-classification task plugin: `AutoModelForTokenClassification`, word-level metrics, entity records."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import nn
from torchmetrics import MetricCollection
from transformers import AutoConfig, AutoModelForTokenClassification

from lit_ft.loading import LoadOptions, load_pretrained
from lit_ft.task import Batch, Task, label_tokens
from lit_ft.tasks.token_classification.data import TokenClassificationData
from lit_ft.tasks.token_classification.metrics import EntityScores, TokenAccuracy, word_predictions
from lit_ft.tasks.token_classification.schemes import get_entities

if TYPE_CHECKING:
    from lit_ft.datamodule import TaskDataModule
    from lit_ft.report.run import RunFiles
    from lit_ft.report.section import Section


class TokenClassificationTask(Task):
    """Tags every word of a sentence (NER, POS tagging, chunking).

    Metrics are computed per word (the tag of its first sub-token): entity `precision`, `recall`, `f1` (micro,
    and `f1/TYPE` per entity type, as seqeval computes them) when the tags form entities, and `token_accuracy`.

    Args:
        info: `label_names` and `tag_scheme` (the target scheme, `none` for plain tags) from the data.
        monitor: Metric that checkpointing and early stopping watch (`precision`, `recall`, `f1`, `f1/TYPE`,
            `token_accuracy` or `loss`); null: `f1`, or `token_accuracy` when the target scheme is `none`. `loss`
            is minimised, any other metric maximised.
    """

    name = "token_classification"
    datamodule = TokenClassificationData
    pipeline_tag = "token-classification"
    predictions_at_test = True
    peft_task_type = "TOKEN_CLS"
    onnx_outputs = ("logits",)

    def __init__(self, info: dict[str, Any], monitor: str | None = None) -> None:
        super().__init__(info)
        self.names: list[str] = info["label_names"]
        self.entity_level = info.get("tag_scheme", "IOB2") != "none"
        default = "f1" if self.entity_level else "token_accuracy"
        self._monitor = monitor or default

    def serve_rows(self, inputs: list[Any], datamodule: TaskDataModule) -> dict[str, list[Any]]:
        """A text input is a sentence split into words at whitespace (the records name entities by word); an
        object is a row with its `token_column` list, as by default."""
        column = datamodule.token_column if isinstance(datamodule, TokenClassificationData) else "tokens"
        rows = [{column: v.split()} if isinstance(v, str) else v for v in inputs]
        return super().serve_rows(rows, datamodule)

    def build_model(self, backbone: str, load: LoadOptions) -> nn.Module:
        config = AutoConfig.from_pretrained(
            backbone,
            num_labels=len(self.names),
            id2label=dict(enumerate(self.names)),
            label2id={n: i for i, n in enumerate(self.names)},
        )
        return load_pretrained(AutoModelForTokenClassification, backbone, load, config=config)

    def metrics(self) -> MetricCollection:
        metrics: dict[str, Any] = {"token_accuracy": TokenAccuracy()}
        if self.entity_level:
            metrics["entities"] = EntityScores(self.names)
        return MetricCollection(metrics, compute_groups=False)

    def loss_weight(self, batch: Batch) -> int:
        return label_tokens(batch)  # a mean over the labelled sub-tokens

    def update_metrics(self, metrics: MetricCollection, model: nn.Module, batch: Batch, outputs: Any) -> None:
        target = batch["word_labels"]  # (batch, words)
        preds = word_predictions(outputs.logits.argmax(-1), batch["word_ids"], target.shape[1])
        metrics.update(preds, target)

    def predictions(self, model: nn.Module, batch: Batch, outputs: Any) -> list[dict[str, Any]]:
        width = max((len(t) for t in batch["tokens"]), default=0)
        words = word_predictions(outputs.logits.argmax(-1), batch["word_ids"], width).tolist()
        return [
            self._record(row_id, tokens, ids[: len(tokens)], bool(cut))
            for row_id, tokens, ids, cut in zip(batch["id"], batch["tokens"], words, batch["truncated"], strict=True)
        ]

    def _record(self, row_id: str, tokens: list[str], ids: list[int], truncated: bool) -> dict[str, Any]:
        fallback = "O" if "O" in self.names else None  # words cut off by truncation
        tags = [self.names[i] if i >= 0 else fallback for i in ids]
        record: dict[str, Any] = {"id": row_id, "text": " ".join(tokens), "tokens": tokens, "tags": tags}
        if self.entity_level:
            record["entities"] = entity_records(tokens, [t or "O" for t in tags])
        record["truncated"] = truncated
        return record

    def monitor(self) -> str:
        return self._monitor

    @classmethod
    def report_sections(cls, run: RunFiles) -> list[Section]:
        from lit_ft.tasks.token_classification.report import token_classification_sections

        return token_classification_sections(run)


def entity_records(tokens: list[str], tags: list[str]) -> list[dict[str, Any]]:
    """Entities of a tagged sentence with token span `[start, end)` and character offsets into
    `" ".join(tokens)`."""
    starts, pos = [], 0
    for token in tokens:
        starts.append(pos)
        pos += len(token) + 1
    return [
        {
            "type": e.type,
            "start": e.start,
            "end": e.end,
            "start_char": starts[e.start],
            "end_char": starts[e.end - 1] + len(tokens[e.end - 1]),
            "text": " ".join(tokens[e.start : e.end]),
        }
        for e in get_entities(tags)
    ]
