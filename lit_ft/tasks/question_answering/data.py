"""Question-answering data: SQuAD JSON or flat rows -> overflowing token windows with char offsets."""

from __future__ import annotations

from typing import Any

import datasets
import torch

from lit_ft.datamodule import TaskDataModule
from lit_ft.domains import NonNegativeInt, PositiveInt
from lit_ft.errors import UserError
from lit_ft.example_view import CLOSE, OPEN, field, marked
from lit_ft.rows import ROW, row_name
from lit_ft.source import local_path
from lit_ft.task import Batch
from lit_ft.tasks.question_answering.squad_json import answer_lists, is_squad_json, load_squad_json


class SplitRows:
    """The raw rows of one split as Python lists, indexed by row position (contexts to cut answers from); ids are
    data here: they may repeat, and windows are merged by row."""

    def __init__(self, ids: list[str], questions: list[str], contexts: list[str], answers: list[list[str]]) -> None:
        self.ids, self.questions, self.contexts, self.answers = ids, questions, contexts, answers


class QuestionAnsweringData(TaskDataModule):
    """Extractive QA rows (question, context, answers) cut into overlapping windows of the context.

    Local `.json` files in the official SQuAD layout (`data -> paragraphs -> qas`, v1.1 or v2.0 with
    `is_impossible`, or `data -> [flat rows]`) are read here; flat JSON/JSONL/CSV/parquet files and hub
    datasets (like `rajpurkar/squad`) go through `DataSource`, with answers as `{"text": [...],
    "answer_start": [...]}` (or a list of `{"text", "answer_start"}`). Empty answers mean unanswerable.

    Args:
        question_column: Column with the question.
        context_column: Column with the context the answer is cut from.
        answers_column: Column with the gold answers (not needed for predict).
        stride: Tokens shared by consecutive windows of a long context.
        max_length: Tokens per window (question + context + special tokens).
        **kwargs: Source, tokenizer and batching settings of `TaskDataModule`.
    """

    task_name = "question_answering"

    def __init__(
        self,
        question_column: str = "question",
        context_column: str = "context",
        answers_column: str = "answers",
        stride: NonNegativeInt = 128,
        max_length: PositiveInt = 384,
        **kwargs: Any,
    ) -> None:
        super().__init__(max_length=max_length, **kwargs)
        self.question_column = question_column
        self.context_column = context_column
        self.answers_column = answers_column
        self.stride = stride
        self._rows: dict[str, SplitRows] = {}
        if not 0 <= stride < max_length:
            raise UserError(f"data.stride ({stride}) must be 0 or more and below data.max_length ({max_length}): "
                            "consecutive windows share `stride` tokens; lower data.stride")

    # ---- raw rows: SQuAD JSON read here, everything else by the base -----------------------------
    def load_split(self, split: str) -> datasets.Dataset | None:
        where = self.source.location(split)
        own_reader = self.source.field is None and self.source.format in ("auto", "json")
        if where is not None and not self.source.hub and own_reader and is_squad_json(local_path(where)):
            return load_squad_json(local_path(where), f"data.source.{split}")
        return super().load_split(split)

    def rows(self, split: str) -> SplitRows:
        """Contexts, questions and gold answer texts of a split, for decoding and scoring (read once per split)."""
        if split not in self._rows:
            self._rows[split] = self._read_rows(split)
        return self._rows[split]

    def forget_split(self, split: str) -> None:
        super().forget_split(split)
        self._rows.pop(split, None)

    def _read_rows(self, split: str) -> SplitRows:
        ds = self.raw(split)
        if ds is None:
            raise UserError(f"data.source.{split} is not set; give a file or a split name")
        self.require_columns({c: [] for c in ds.column_names}, split, {
            "question_column": self.question_column, "context_column": self.context_column})
        answers = ds[self.answers_column] if self.answers_column in ds.column_names else [None] * len(ds)
        texts = [answer_lists(a, self._row(row_id, split), self.answers_column)["text"]
                 for row_id, a in zip(ds["id"], answers, strict=True)]
        return SplitRows(list(ds["id"]), list(ds[self.question_column]), list(ds[self.context_column]), texts)

    def _row(self, row_id: str, split: str) -> str:
        return f"row '{row_id}' of {self.source.describe(split)}"

    def refuse_unanswerable(self, splits: tuple[str, ...]) -> None:
        """Fail when a split with gold answers has unanswerable rows: without SQuAD v2.0 rules they would train the
        model to point at its CLS token and score 0 whatever it answers, with no word said."""
        for split in splits:
            raw = self.raw(split)
            if raw is None or self.answers_column not in raw.column_names:
                continue
            rows = self.rows(split)
            empty = [row_id for row_id, answers in zip(rows.ids, rows.answers, strict=True) if not answers]
            if empty:
                raise UserError(
                    f"{len(empty)} of {len(rows.ids)} rows of {self.source.describe(split)} have no answer (SQuAD "
                    f"v2.0 style, first: row '{empty[0]}'), but model.task_options.version_2_with_negative is false; "
                    "set --model.task_options.version_2_with_negative true to allow \"no answer\", or drop those rows"
                )

    def prediction_inputs(self, split: str) -> list[dict[str, Any]]:
        """Per row: `question`, `context` and, when the split has answers, `gold_answers` (texts; [] =
        unanswerable)."""
        raw = self.raw(split)
        if raw is None:
            return []
        rows, gold = self.rows(split), self.answers_column in raw.column_names
        return [{"question": q, "context": c, **({"gold_answers": a} if gold else {})}
                for q, c, a in zip(rows.questions, rows.contexts, rows.answers, strict=True)]

    # ---- features ------------------------------------------------------------------------------
    def encode(self, rows: dict[str, list[Any]], split: str) -> dict[str, list[Any]]:
        self.require_columns(rows, split, {"question_column": self.question_column,
                                           "context_column": self.context_column})
        # leading spaces of a question only waste window room (some SQuAD questions have many)
        questions = [q.lstrip() for q in self.texts(rows, split, "question_column", self.question_column)]
        contexts = self.texts(rows, split, "context_column", self.context_column)
        self._check_question_lengths(rows["id"], questions, contexts, split)
        try:
            enc = self.tokenizer(
                questions, contexts, truncation="only_second", max_length=self.max_length,
                stride=self.stride, return_overflowing_tokens=True, return_offsets_mapping=True,
            )
        except Exception as err:
            raise UserError(f"could not cut {self.source.describe(split)} into windows: {err}. A question "
                             "plus data.stride must fit in data.max_length: lower stride or raise max_length") from err
        example = enc.pop("overflow_to_sample_mapping")
        offsets = enc.pop("offset_mapping")
        out: dict[str, list[Any]] = {k: list(v) for k, v in enc.items()}
        context_offsets = [_context_offsets(enc.sequence_ids(w), offsets[w]) for w in range(len(example))]
        out["offset_start"] = [[s for s, _ in o] for o in context_offsets]
        out["offset_end"] = [[e for _, e in o] for o in context_offsets]
        out["id"] = [rows["id"][i] for i in example]
        out[ROW] = [rows[ROW][i] for i in example]  # windows are merged by row, never by id
        out["split"] = [split] * len(example)
        if self.answers_column in rows:
            spans = [self._gold_span(rows, i, split) for i in range(len(rows["id"]))]
            labels = [_token_span(o, spans[i]) for o, i in zip(context_offsets, example, strict=True)]
            out["start_positions"] = [s for s, _ in labels]
            out["end_positions"] = [e for _, e in labels]
        elif split != "predict":
            self.require_columns(rows, split, {"answers_column": self.answers_column})
        return out

    def _check_question_lengths(self, ids: list[str], questions: list[str], contexts: list[str], split: str) -> None:
        """Fail naming the row when a question leaves a window no more than `stride` context tokens and the context
        does not fit beside it: the fast tokenizer cannot cut such a pair (it panics in Rust, or errs)."""
        specials = self.tokenizer.num_special_tokens_to_add(pair=True)
        room = self.max_length - specials - self.stride - 1  # question tokens that leave stride + 1 for the context
        lengths = [len(ids) for ids in self.tokenizer(questions, add_special_tokens=False, verbose=False)["input_ids"]]
        for i, n in enumerate(lengths):
            if n <= room or n + specials + self._tokens(contexts[i]) <= self.max_length:
                continue
            raise UserError(
                f"{self._row(ids[i], split)}: the question is {n} tokens, but data.max_length ({self.max_length}) "
                f"less data.stride ({self.stride}) and {specials} special tokens leaves room for {max(room, 0)} "
                "question tokens in a window (each window needs more than `stride` context tokens); raise "
                "data.max_length, lower data.stride, or drop rows with such long questions"
            )

    def _tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])

    def _gold_span(self, rows: dict[str, list[Any]], i: int, split: str) -> tuple[int, int] | None:
        """Char span (start, end exclusive) of the first gold answer, trimmed of spaces; None if unanswerable."""
        answers = answer_lists(rows[self.answers_column][i], self._row(rows["id"][i], split), self.answers_column)
        if not answers["text"]:
            return None
        text, start, context = answers["text"][0], answers["answer_start"][0], rows[self.context_column][i]
        if context[start : start + len(text)] != text:
            found = [j for j in range(len(context)) if context.startswith(text, j)]
            if not found:
                raise UserError(
                    f"answer {text!r} of {row_name(rows['id'][i], rows[ROW][i])} in {self.source.describe(split)} "
                    "is not in its "
                    f"context (answer_start {start}); fix the row or drop it")
            start = min(found, key=lambda j: abs(j - start))
        end = start + len(text)
        start += len(text) - len(text.lstrip())
        end -= len(text) - len(text.rstrip())
        return (start, end) if end > start else None

    def example_keys(self, rows: dict[str, list[Any]]) -> list[str]:
        if self.question_column not in rows or self.context_column not in rows:
            return super().example_keys(rows)
        return [f"{q}\n{c}" for q, c in zip(rows[self.question_column], rows[self.context_column], strict=True)]

    def cut_inputs(self, split: str) -> int:
        """No window loses tokens: questions are never cut (`only_second`), a long context goes on in the next
        window (windows filling `max_length` are the rule here, not a loss)."""
        return 0

    def show_example(self, feature: dict[str, Any]) -> list[str]:
        """One window (question + a stretch of the context) with the answer's tokens in `[[...]]`."""
        ids = feature["input_ids"]
        start, end = feature.get("start_positions"), feature.get("end_positions")
        keep = [start is not None and end is not None and 0 < start <= i <= end for i in range(len(ids))]
        context = [i for i, s in enumerate(feature["offset_start"]) if s >= 0]
        where = f"context chars {feature['offset_start'][context[0]]}-{feature['offset_end'][context[-1]]}"
        if start is None:
            answer = "no labels"
        elif any(keep):
            answer = f"answer tokens {start}-{end} in {OPEN}{CLOSE}"
        else:
            answer = "no answer in this window (start and end point at token 0)"
        return field(f"window ({where if context else 'no context'}; {answer})", marked(self.tokenizer, ids, keep))

    def collate(self, rows: list[dict[str, Any]]) -> Batch:
        starts, ends = [r.pop("offset_start") for r in rows], [r.pop("offset_end") for r in rows]
        split = rows[0]["split"]
        for row in rows:
            row.pop("split")
        batch = super().collate(rows)
        width = batch["inputs"]["input_ids"].shape[1]
        offsets = torch.full((len(rows), width, 2), -1, dtype=torch.long)  # (windows, seq, 2); -1 = not context
        left = self.tokenizer.padding_side == "left"
        for w, (s, e) in enumerate(zip(starts, ends, strict=True)):
            at = slice(width - len(s), width) if left else slice(0, len(s))
            offsets[w, at, 0], offsets[w, at, 1] = torch.tensor(s), torch.tensor(e)
        batch["offsets"] = offsets
        batch["split"] = split
        return batch


def _context_offsets(sequence_ids: list[int | None], offsets: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Char offsets of context tokens; (-1, -1) for question, special and padding tokens."""
    return [(int(o[0]), int(o[1])) if s == 1 else (-1, -1) for s, o in zip(sequence_ids, offsets, strict=True)]


def _token_span(offsets: list[tuple[int, int]], span: tuple[int, int] | None) -> tuple[int, int]:
    """Token start/end of a char span inside this window; (0, 0) (CLS) when it is absent or cut off."""
    context = [i for i, (s, _) in enumerate(offsets) if s >= 0]
    if span is None or not context:
        return 0, 0
    start_char, end_char = span
    if offsets[context[0]][0] > start_char or offsets[context[-1]][1] < end_char:
        return 0, 0
    start = max(i for i in context if offsets[i][0] <= start_char)
    end = min(i for i in context if offsets[i][1] >= end_char)
    return start, max(start, end)
