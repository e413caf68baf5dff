"""Extractive question answering (SQuAD v1.1 / v2.0) with `AutoModelForQuestionAnswering`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torchmetrics import MetricCollection
from transformers import AutoModelForQuestionAnswering

from lit_ft.datamodule import STAGE_SPLITS, TaskDataModule
from lit_ft.domains import PositiveInt
from lit_ft.errors import UserError
from lit_ft.io import write_jsonl, write_text
from lit_ft.loading import LoadOptions, load_pretrained
from lit_ft.rows import ROW
from lit_ft.task import Batch, Task
from lit_ft.tasks.question_answering.data import QuestionAnsweringData, SplitRows
from lit_ft.tasks.question_answering.decode import choose_answers, merge_windows, window_spans
from lit_ft.tasks.question_answering.squad_metric import SquadMetric

if TYPE_CHECKING:
    from lit_ft.report.run import RunFiles
    from lit_ft.report.section import Section


class QuestionAnsweringTask(Task):
    """Predicts an answer span of the context (or no answer, for SQuAD v2.0 style data).

    Args:
        info: Nothing is needed from the data.
        version_2_with_negative: Allow "no answer" (SQuAD v2.0): answer "" when the null score beats the best
            span by more than `null_threshold`, and report HasAns / NoAns scores.
        null_threshold: Margin of the null score over the best span score needed to answer "" (v2.0 only).
        max_answer_length: Longest answer span in tokens.
        n_best: Candidate spans kept per example in the prediction JSONL.
    """

    name = "question_answering"
    datamodule = QuestionAnsweringData
    pipeline_tag = "question-answering"
    predictions_at_test = True
    peft_task_type = "QUESTION_ANS"
    onnx_outputs = ("start_logits", "end_logits")
    # no clipping: QA gradients grow during training, where clipping holds Adam back (docs/training.md)
    trainer_defaults = {"gradient_clip_val": None}

    def __init__(self, info: dict[str, Any], version_2_with_negative: bool = False, null_threshold: float = 0.0,
                 max_answer_length: PositiveInt = 30, n_best: PositiveInt = 20) -> None:
        super().__init__(info)
        if max_answer_length < 1 or n_best < 1:
            raise UserError(f"max_answer_length and n_best must be >= 1, got {max_answer_length} and {n_best}")
        self.version_2 = version_2_with_negative
        self.null_threshold = null_threshold
        self.max_answer_length = max_answer_length
        self.n_best = n_best
        self.data: QuestionAnsweringData | None = None

    def build_model(self, backbone: str, load: LoadOptions) -> nn.Module:
        return load_pretrained(AutoModelForQuestionAnswering, backbone, load)

    def bind_data(self, datamodule: TaskDataModule) -> None:
        if not isinstance(datamodule, QuestionAnsweringData):
            raise TypeError(f"task 'question_answering' needs data.class_path "
                            f"lit_ft.tasks.question_answering.QuestionAnsweringData, got {type(datamodule).__name__}")
        self.data = datamodule
        fn = getattr(getattr(datamodule.trainer, "state", None), "fn", None)
        if not self.version_2 and fn is not None:  # the splits this run trains or scores on (predict scores none)
            stage = str(getattr(fn, "value", fn))
            datamodule.refuse_unanswerable(tuple(s for s in STAGE_SPLITS.get(stage, ()) if s != "predict"))

    def _rows(self, batch: Batch) -> SplitRows:
        if self.data is None:
            raise RuntimeError("question answering decodes against its data module's contexts; run it through a "
                               "Trainer with a QuestionAnsweringData (bind_data was not called)")
        return self.data.rows(batch["split"])

    def metrics(self) -> MetricCollection:
        return MetricCollection({"squad": SquadMetric(self.version_2, self.null_threshold)})

    def update_metrics(self, metrics: MetricCollection, model: nn.Module, batch: Batch, outputs: Any) -> None:
        rows = self._rows(batch)
        # the same n-best search as `predictions`, so ties resolve alike and the metric matches predictions.json
        spans = window_spans(outputs.start_logits, outputs.end_logits, batch["offsets"], self.max_answer_length,
                             self.n_best)
        positions = torch.tensor(batch[ROW], dtype=torch.long, device=spans.score.device)
        metrics["squad"].update(positions, spans.score[:, 0],
                                spans.char_start[:, 0], spans.char_end[:, 0], spans.null, references=rows)

    def predictions(self, model: nn.Module, batch: Batch, outputs: Any) -> list[dict[str, Any]]:
        """One record per window: its id, null score and n-best spans; `merge_rows` merges a row's windows."""
        rows = self._rows(batch)
        spans = window_spans(outputs.start_logits, outputs.end_logits, batch["offsets"], self.max_answer_length,
                             self.n_best)
        records = []
        scores, starts, ends = spans.score.tolist(), spans.char_start.tolist(), spans.char_end.tolist()
        for w, (row_id, row) in enumerate(zip(batch["id"], batch[ROW], strict=True)):
            context = rows.contexts[row]
            candidates = [
                {"text": context[s:e], "score": score, "start": s, "end": e}
                for score, s, e in zip(scores[w], starts[w], ends[w], strict=True)
                if s >= 0
            ]
            records.append({"id": row_id, "null_score": float(spans.null[w]), "candidates": candidates})
        return records

    def merge_rows(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """A row's windows -> its answer: the best span over them, the smallest null score (merged by row)."""
        return choose_answers(merge_windows(records, self.n_best), self.version_2, self.null_threshold)

    def write_predictions(self, records: list[dict[str, Any]], path: Path) -> list[Path]:
        """`path` (JSONL: inputs, answer, score, null score, n-best per row) and the same name with `.json` next
        to it (`predictions.json`, `test_predictions.json`) in the official SQuAD `{id: answer}` format (which holds
        one answer per id: with repeated ids, the last row's; the JSONL keeps every row)."""
        answers = records
        write_jsonl(answers, path)
        official = path.with_suffix(".json")  # predictions.jsonl -> predictions.json
        write_text(json.dumps({a["id"]: a["answer"] for a in answers}, ensure_ascii=False, indent=1), official)
        return [path, official]

    def samples(self, metrics: MetricCollection) -> list[dict[str, Any]]:
        metric = metrics["squad"]
        assert isinstance(metric, SquadMetric)
        return list(metric.last_samples)

    def monitor(self) -> str:
        return "f1"

    @classmethod
    def report_sections(cls, run: RunFiles) -> list[Section]:
        from lit_ft.tasks.question_answering.report import question_answering_sections

        return question_answering_sections(run)
