"""Text classification: single-label (sentiment, topic, intent), multi-label and regression."""

from __future__ import annotations

import collections
import json
from typing import TYPE_CHECKING, Any, Literal

import datasets
import torch
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
    MultilabelExactMatch,
    MultilabelF1Score,
)
from torchmetrics.regression import MeanSquaredError, PearsonCorrCoef, SpearmanCorrCoef
from torchmetrics.wrappers import ClasswiseWrapper
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from lit_ft.datamodule import TaskDataModule
from lit_ft.domains import ClosedUnitInterval
from lit_ft.errors import UserError
from lit_ft.label_sanity import check_discovered_labels, label_map_example
from lit_ft.loading import LoadOptions, load_pretrained
from lit_ft.rows import ROW, row_name
from lit_ft.task import Batch, Task

if TYPE_CHECKING:
    from lit_ft.report.run import RunFiles
    from lit_ft.report.section import Section

ProblemType = Literal["single_label", "multi_label", "regression"]
HF_PROBLEM_TYPES = {
    "single_label": "single_label_classification",
    "multi_label": "multi_label_classification",
    "regression": "regression",
}
DEFAULT_MONITOR = {"single_label": "accuracy", "multi_label": "f1", "regression": "mse"}


class Pearson(PearsonCorrCoef):
    """Pearson's r as a training target: higher is better (torchmetrics leaves the direction of a correlation
    unset, as -1 is as strong a relation as +1; checkpointing and early stopping need one, see lit_ft.monitor)."""

    higher_is_better = True


class ClassificationData(TaskDataModule):
    """Rows with a text (and optional text pair) and a label.

    Args:
        text_column: Column with the text.
        text_pair_column: Column with the second text of a pair task (entailment, paraphrase), if any.
        label_column: Column with the label: a class name or id (single-label); a list, or names joined by
            `label_separator` (multi-label); a number (regression).
        label_names: Class names in model order; discovered from the training split (sorted) when not given.
            Discovered names that differ only by case or surrounding spaces, or mix numbers and names, are refused
            (join them with `label_map`, or list the classes here to keep them as they are).
        problem_type: `single_label`, `multi_label` (sigmoid + BCE) or `regression` (one output, MSE).
        label_separator: Separator of multi-label names given as one string.
        label_map: Renames raw label values to label names when reading every split (for example `{"1": World}`
            for numbered files, `{"positive ": positive, Positive: positive}` to join spellings into one class).
        **kwargs: Source, tokenizer and batching settings of `TaskDataModule`.
    """

    task_name = "classification"

    def __init__(
        self,
        text_column: str = "text",
        text_pair_column: str | None = None,
        label_column: str = "label",
        label_names: list[str] | None = None,
        problem_type: ProblemType = "single_label",
        label_separator: str = ",",
        label_map: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.text_column = text_column
        self.text_pair_column = text_pair_column
        self.label_column = label_column
        self.label_names = label_names
        self.problem_type = problem_type
        self.label_separator = label_separator
        self.label_map = {str(k): str(v) for k, v in (label_map or {}).items()}  # YAML `{1: World}` has int keys
        self._index_names: tuple[str, ...] = ()
        self._index: dict[str, int] = {}

    @property
    def _label_index(self) -> dict[str, int]:
        names = tuple(self.info["label_names"])  # rebuilt only when the info changes (use_info)
        if self._index_names != names:
            self._index_names, self._index = names, {n: i for i, n in enumerate(names)}
        return self._index

    def _name(self, value: Any) -> str:
        return self.label_map.get(str(value), str(value))

    def _label_list(self, value: Any) -> list[str]:
        if isinstance(value, str):
            return [self._name(v.strip()) for v in value.split(self.label_separator) if v.strip()]
        if not isinstance(value, (list, tuple)):
            return [self._name(value)]
        return [self._name(v) for v in value]

    def line_column_name(self) -> str | None:
        return self.text_column

    def build_info(self) -> dict[str, Any]:
        if self.problem_type == "regression":
            return {"problem_type": "regression", "label_names": [self.label_column]}
        if self.label_names:
            return {"problem_type": self.problem_type, "label_names": list(self.label_names)}
        train = self.raw("train")
        if train is None:
            raise UserError(
                "label names are unknown: there is no training split to discover them from; "
                "set data.label_names or run with --ckpt_path of a trained model"
            )
        self.require_columns({c: [] for c in train.column_names}, "train", {"label_column": self.label_column})
        feature = train.features[self.label_column]
        names = getattr(feature, "names", None) or getattr(getattr(feature, "feature", None), "names", None)
        if names is None:
            names = discover_labels(train[self.label_column], self._label_list, self.problem_type)
            self._check_not_scores(names)
            if self.problem_type == "single_label":  # mapped here, so values mapped to one name make one class
                names = list(dict.fromkeys(self._name(n) for n in names))
            where = f"{self.source.describe('train')} (column '{self.label_column}')"
            check_discovered_labels(names, where, f"join them with data.label_map (raw value: class name, for "
                                    f"example {label_map_example(names)}), or list the classes in data.label_names "
                                    "to keep them as they are")
        return {"problem_type": self.problem_type, "label_names": _two_or_more(list(names))}

    def _check_not_scores(self, names: list[str]) -> None:
        """Fractional numbers as class names are almost always scores meant for regression."""
        scores = [n for n in names if _is_fraction(n)]
        if scores:
            raise UserError(
                f"label column '{self.label_column}' of {self.source.describe('train')} holds fractional numbers "
                f"such as {scores[0]}, which {self.problem_type} classification would treat as {len(names)} classes; "
                "for scores set data.problem_type regression, for classes use whole numbers or names"
            )

    def encode(self, rows: dict[str, list[Any]], split: str) -> dict[str, list[Any]]:
        self.require_columns(rows, split, {"text_column": self.text_column, "text_pair_column": self.text_pair_column})
        texts = self.texts(rows, split, "text_column", self.text_column)
        pairs = self.texts(rows, split, "text_pair_column", self.text_pair_column) if self.text_pair_column else None
        out = dict(self.tokenizer(texts, pairs, truncation=True, max_length=self.max_length))
        if self.label_column in rows and split != "predict":  # predict labels are only shown (`prediction_inputs`)
            raw = self.raw(split)
            feature = raw.features.get(self.label_column) if raw is not None else None
            values = rows[self.label_column]
            if isinstance(feature, datasets.ClassLabel):  # hub datasets store class ids; -1 marks "no label"
                values = [feature.int2str(v) if v >= 0 else None for v in values]
            names = [row_name(i, r) for i, r in zip(rows["id"], rows[ROW], strict=True)]
            out["labels"] = [self._encode_label(v, name, split) for v, name in zip(values, names, strict=True)]
        elif split != "predict":
            self.require_columns(rows, split, {"label_column": self.label_column})
        return out

    def prediction_inputs(self, split: str) -> list[dict[str, Any]]:
        """Per row: `text`, `text_pair` (pair tasks) and, when the split has labels, `gold_label` (`gold_labels` for
        multi-label, `gold_score` for regression) as the model's label names."""
        raw = self.raw(split)
        if raw is None:
            return []
        columns = {"text": self.text_column, "text_pair": self.text_pair_column}
        # the texts as the model read them (`texts`): a number in a JSON text column is its string
        fields = {key: [v if v is None or isinstance(v, str) else str(v) for v in raw[column]]
                  for key, column in columns.items() if column and column in raw.column_names}
        if self.label_column in raw.column_names:
            key, values = self._gold(raw[self.label_column], raw.features.get(self.label_column))
            fields[key] = values
        return [{k: v[i] for k, v in fields.items()} for i in range(len(raw))]

    def _gold(self, values: list[Any], feature: Any) -> tuple[str, list[Any]]:
        """The gold labels of raw label values, as `encode` reads them (ClassLabel ids, `label_map`)."""
        if isinstance(feature, datasets.ClassLabel):
            values = [feature.int2str(v) if v is not None and v >= 0 else None for v in values]
        if self.problem_type == "regression":
            return "gold_score", [None if v is None else float(v) for v in values]
        if self.problem_type == "multi_label":
            return "gold_labels", [None if v is None else self._label_list(v) for v in values]
        return "gold_label", [None if v is None else self._name(v) for v in values]

    def label_counts(self, split: str) -> dict[str, int]:
        """Rows per label name, read from the raw rows: names the model does not know are counted too."""
        raw = self.raw(split)
        if raw is None or self.label_column not in raw.column_names or self.problem_type == "regression":
            return {}
        feature = raw.features[self.label_column]
        counts: collections.Counter[str] = collections.Counter()
        for value in raw[self.label_column]:
            if isinstance(feature, datasets.ClassLabel):
                value = feature.int2str(value) if value >= 0 else None
            if value is not None:
                counts.update(self._label_list(value) if self.problem_type == "multi_label" else [self._name(value)])
        order = {n: i for i, n in enumerate(self.info["label_names"])}
        return dict(sorted(counts.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))

    def example_keys(self, rows: dict[str, list[Any]]) -> list[str]:
        if self.text_column not in rows:
            return super().example_keys(rows)
        pairs = rows[self.text_pair_column] if self.text_pair_column in rows else [None] * len(rows["id"])
        return [f"{text}\t{pair}" if pair is not None else str(text)
                for text, pair in zip(rows[self.text_column], pairs, strict=True)]

    def example_labels(self, rows: dict[str, list[Any]]) -> list[str] | None:
        if self.label_column not in rows:
            return None
        return [json.dumps(sorted(self._label_list(v)), default=str) for v in rows[self.label_column]]

    def _encode_label(self, value: Any, row: str, split: str) -> Any:
        """The label's encoding; `row` names the row in errors (`row_name`)."""
        if value is None:
            raise UserError(
                f"{row} of {self.source.describe(split)} has no label (column '{self.label_column}'); "
                "unlabelled splits (like GLUE test sets) belong in data.source.predict"
            )
        if self.problem_type == "regression":
            try:
                return float(value)
            except (TypeError, ValueError):
                raise UserError(
                    f"label {value!r} of {row} in {self.source.describe(split)} (column "
                    f"'{self.label_column}') is not a number, which data.problem_type regression needs; for class "
                    "names set data.problem_type single_label"
                ) from None
        names = self.info["label_names"]
        index = self._label_index
        if self.problem_type == "multi_label":
            values = self._label_list(value)
            unknown = [v for v in values if v not in index]
            hot = [0.0] * len(names)
            for v in values:
                hot[index.get(v, 0)] = 1.0
        else:
            value = self._name(value)
            unknown = [] if value in index else [value]
        if unknown:
            raise UserError(
                f"label {unknown} of {row} in {self.source.describe(split)} (column '{self.label_column}') "
                f"is not one of the label names {names}; add it to data.label_names or fix the row"
            )
        return hot if self.problem_type == "multi_label" else index[value]


def _two_or_more(names: list[str]) -> list[str]:
    """A classifier needs two classes: one class would train nothing (and its metrics cannot be built)."""
    if len(names) < 2:
        raise UserError(f"the training split has {len(names)} class(es) {names}: classification needs two or more; "
                        "add rows of the other classes, or list every class in data.label_names")
    return names


def _is_fraction(name: str) -> bool:
    try:
        return not float(name).is_integer()
    except ValueError:
        return False


def discover_labels(values: list[Any], split_labels: Any, problem_type: str) -> list[str]:
    """Sorted distinct label names (numbers in numeric order) of a column."""
    found: set[Any] = set()
    for v in values:
        if problem_type == "multi_label":
            found.update(split_labels(v))
        elif v is not None:
            found.add(v)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in found):
        return [str(v) for v in sorted(found)]
    if all(isinstance(v, str) and _number(v) is not None for v in found):  # csv cells are text: "2" before "10"
        return sorted(found, key=lambda v: (_number(v), v))
    return sorted(str(v) for v in found)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


class ClassificationTask(Task):
    """Sequence classification with `AutoModelForSequenceClassification`.

    Args:
        info: `problem_type` and `label_names` from the data.
        threshold: Probability above which a class is predicted (`data.problem_type: multi_label` only).
        monitor: Metric that checkpointing and early stopping watch; null: `accuracy` (single-label), `f1`
            (multi-label) or `mse` (regression).
    """

    name = "classification"
    datamodule = ClassificationData
    pipeline_tag = "text-classification"
    predictions_at_test = True
    peft_task_type = "SEQ_CLS"
    onnx_outputs = ("logits",)
    # no clipping: on 150-intent CLINC150 it cost accuracy against the HF Trainer (docs/training.md, bench/cls_vs_hf.py)
    trainer_defaults = {"gradient_clip_val": None}

    def __init__(self, info: dict[str, Any], threshold: ClosedUnitInterval = 0.5, monitor: str | None = None) -> None:
        super().__init__(info)
        self.problem_type: str = info["problem_type"]
        self.names: list[str] = info["label_names"]
        if self.problem_type != "regression" and len(self.names) < 2:
            raise UserError(f"the model has {len(self.names)} class(es) {self.names}: classification needs two or "
                            "more; list every class in data.label_names")
        self.threshold = threshold
        self._monitor = monitor or DEFAULT_MONITOR[self.problem_type]

    def build_model(self, backbone: str, load: LoadOptions) -> nn.Module:
        config = AutoConfig.from_pretrained(
            backbone,
            num_labels=len(self.names) if self.problem_type != "regression" else 1,
            id2label=dict(enumerate(self.names)),
            label2id={n: i for i, n in enumerate(self.names)},
            problem_type=HF_PROBLEM_TYPES[self.problem_type],
        )
        if getattr(config, "pad_token_id", None) is None:  # decoder LLMs pool on the last non-pad token
            tokenizer = AutoTokenizer.from_pretrained(backbone)
            pad = tokenizer.pad_token_id
            config.pad_token_id = pad if pad is not None else tokenizer.eos_token_id
        return load_pretrained(AutoModelForSequenceClassification, backbone, load, config=config)

    def metrics(self) -> MetricCollection:
        n = len(self.names)
        if self.problem_type == "regression":
            return MetricCollection(
                {"mse": MeanSquaredError(), "pearson": Pearson(), "spearman": SpearmanCorrCoef()}
            )
        if self.problem_type == "multi_label":
            t = self.threshold
            return MetricCollection({
                "f1": MultilabelF1Score(n, threshold=t, average="micro"),
                "f1_macro": MultilabelF1Score(n, threshold=t, average="macro"),
                "exact_match": MultilabelExactMatch(n, threshold=t),
            })
        return MetricCollection({
            "accuracy": MulticlassAccuracy(n, average="micro"),
            "precision": MulticlassPrecision(n, average="macro"),
            "recall": MulticlassRecall(n, average="macro"),
            "f1": MulticlassF1Score(n, average="macro"),
            "f1_per_class": ClasswiseWrapper(MulticlassF1Score(n, average=None), labels=self.names, prefix="f1/"),
        }, compute_groups=False)  # shared compute groups leave the wrapped per-class metric looking un-updated

    def update_metrics(self, metrics: MetricCollection, model: nn.Module, batch: Batch, outputs: Any) -> None:
        labels = batch["inputs"]["labels"]
        logits = outputs.logits.float()
        if self.problem_type == "regression":
            metrics.update(logits.squeeze(-1), labels.float())
        elif self.problem_type == "multi_label":
            metrics.update(torch.sigmoid(logits), labels.int())
        else:
            metrics.update(logits, labels)

    def predictions(self, model: nn.Module, batch: Batch, outputs: Any) -> list[dict[str, Any]]:
        logits = outputs.logits.float()
        if self.problem_type == "regression":
            return [{"id": i, "score": s} for i, s in zip(batch["id"], logits.squeeze(-1).tolist(), strict=True)]
        multi = self.problem_type == "multi_label"
        probs = (torch.sigmoid(logits) if multi else torch.softmax(logits, -1)).tolist()
        records = []
        for row_id, p in zip(batch["id"], probs, strict=True):
            record: dict[str, Any] = {"id": row_id}
            if multi:
                record["labels"] = [n for n, q in zip(self.names, p, strict=True) if q > self.threshold]
            else:
                record["label"] = self.names[max(range(len(p)), key=p.__getitem__)]
            record["probabilities"] = dict(zip(self.names, p, strict=True))
            records.append(record)
        return records

    def monitor(self) -> str:
        return self._monitor

    @classmethod
    def report_sections(cls, run: RunFiles) -> list[Section]:
        from lit_ft.tasks.classification_report import classification_sections

        return classification_sections(run)
