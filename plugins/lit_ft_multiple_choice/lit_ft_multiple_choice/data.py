"""SWAG-style rows (a context, a question stem, N endings, the correct ending's index) -> (batch, choices, seq)."""

from __future__ import annotations

from typing import Any

import torch
from lit_ft import Batch, TaskDataModule, UserError

SPLIT_ORDER = ("train", "validation", "test", "predict")


class MultipleChoiceData(TaskDataModule):
    """Rows with a context, an optional question stem, N candidate endings and the index of the right one.

    Each choice is encoded as the pair (context, question + " " + ending), as in Transformers' `run_swag`;
    without a context column it is the single text question + " " + ending.

    Args:
        context_column: Column with the context (SWAG: `sent1`); null for none.
        question_column: Column with the question or the ending's stem (SWAG: `sent2`); null for none.
        ending_columns: Columns holding the endings, in choice order (for example `[ending0, ending1]`).
        ending_prefix: When `ending_columns` and `endings_column` are not set: the endings are the columns
            `<prefix>0`, `<prefix>1`, ... (SWAG: `ending`).
        endings_column: One column holding each row's endings as a list (for example `choices`).
        label_column: Column with the index (0-based) of the correct ending; not needed for predict, and
            negative values (SWAG's unlabelled test split) count as missing.
        **kwargs: Source, tokenizer and batching settings of `TaskDataModule`.
    """

    task_name = "multiple_choice"

    def __init__(
        self,
        context_column: str | None = "sent1",
        question_column: str | None = "sent2",
        ending_columns: list[str] | None = None,
        ending_prefix: str = "ending",
        endings_column: str | None = None,
        label_column: str = "label",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.context_column = context_column
        self.question_column = question_column
        self.ending_columns = ending_columns
        self.ending_prefix = ending_prefix
        self.endings_column = endings_column
        self.label_column = label_column

    # ---- the contract: info, encode, collate ---------------------------------------------------
    def build_info(self) -> dict[str, Any]:
        """`num_choices`, read from the first configured split (the model needs it for its metrics)."""
        for split in SPLIT_ORDER:
            raw = self.raw(split)
            if raw is not None and len(raw) > 0:
                return {"num_choices": len(self._endings(raw[:1], split, None)[0])}
        raise ValueError(
            "the number of choices is unknown: no data split is configured; set data.source.train (or run "
            "test/predict with --ckpt_path of a trained model)"
        )

    def encode(self, rows: dict[str, list[Any]], split: str) -> dict[str, list[Any]]:
        k = self.info["num_choices"]
        endings = self._endings(rows, split, k)
        n = len(rows["id"])
        questions = rows[self.question_column] if self.question_column else [""] * n
        # one sequence per choice, row after row (n * k): "question ending", paired with the row's context
        seconds = [f"{q or ''} {e}".strip() for q, ends in zip(questions, endings, strict=True) for e in ends]
        if self.context_column:
            firsts = [c or "" for c in rows[self.context_column] for _ in range(k)]
            flat = self.tokenizer(firsts, seconds, truncation=True, max_length=self.max_length)
        else:
            flat = self.tokenizer(seconds, truncation=True, max_length=self.max_length)
        out = {key: [values[i * k : (i + 1) * k] for i in range(n)] for key, values in flat.items()}
        out["length"] = [max(map(len, choices)) for choices in out["input_ids"]]  # the base would count choices
        out["endings"] = endings
        labels = self._labels(rows, split, k)
        if labels is not None:
            out["labels"] = labels
        return out

    def collate(self, rows: list[dict[str, Any]]) -> Batch:
        """Pad every choice of every row to the longest in the batch: tensors of shape (batch, choices, seq)."""
        ids = [row.pop("id") for row in rows]
        endings = [row.pop("endings") for row in rows]
        labels = [row.pop("labels") for row in rows if "labels" in row]
        k = len(endings[0])
        flat = [{key: row[key][c] for key in row if key != "length"} for row in rows for c in range(k)]
        inputs = {key: t.view(len(rows), k, -1) for key, t in self.padder(flat).items()}
        if labels:
            inputs["labels"] = torch.tensor(labels)
        return {"inputs": inputs, "id": ids, "endings": endings}

    # ---- column handling -------------------------------------------------------------------------
    def ending_names(self, columns: list[str]) -> list[str]:
        """The ending columns in choice order: `ending_columns`, or `<ending_prefix>0`, `<ending_prefix>1`, ..."""
        if self.ending_columns:
            return list(self.ending_columns)
        names: list[str] = []
        while f"{self.ending_prefix}{len(names)}" in columns:
            names.append(f"{self.ending_prefix}{len(names)}")
        return names

    def _endings(self, rows: dict[str, list[Any]], split: str, expected: int | None) -> list[list[str]]:
        """Each row's endings; checks the columns and that every row has `expected` of them (default: as many
        as the first row)."""
        self.require_columns(rows, split, {"context_column": self.context_column,
                                           "question_column": self.question_column,
                                           "endings_column": self.endings_column})
        if self.endings_column:
            endings = [list(e or []) for e in rows[self.endings_column]]
        else:
            names = self.ending_names(list(rows))
            if len(names) < 2:
                found = sorted(k for k in rows if k != "id")
                raise UserError(f"no ending columns '{self.ending_prefix}0', '{self.ending_prefix}1', ... in "
                                f"{self.source.describe(split)}; columns are {found}: set data.ending_prefix, "
                                "data.ending_columns or data.endings_column")
            for name in names:
                self.require_columns(rows, split, {"ending_columns": name})
            endings = [list(row) for row in zip(*(rows[name] for name in names), strict=True)]
        self._check_counts(endings, rows["id"], split, expected or len(endings[0]))
        return [[str(e) for e in ends] for ends in endings]

    def _check_counts(self, endings: list[list[Any]], ids: list[str], split: str, expected: int) -> None:
        for row_id, ends in zip(ids, endings, strict=True):
            if len(ends) != expected or any(e is None for e in ends):
                raise ValueError(
                    f"row '{row_id}' of {self.source.describe(split)} has endings {ends}, but every row needs "
                    f"{expected} endings, none null (the model's number of choices); fix or drop the row"
                )

    def _labels(self, rows: dict[str, list[Any]], split: str, k: int) -> list[int] | None:
        """The correct ending indices; None for predict, which needs no labels (SWAG's test split has -1)."""
        if split == "predict":
            return None
        self.require_columns(rows, split, {"label_column": self.label_column})
        labels: list[int] = []
        for row_id, value in zip(rows["id"], rows[self.label_column], strict=True):
            label = _as_index(value)
            if label is None or not 0 <= label < k:
                raise ValueError(
                    f"label {value!r} of row '{row_id}' in {self.source.describe(split)} (column "
                    f"'{self.label_column}') is not an ending index 0..{k - 1}; fix the row, or use the file as "
                    "data.source.predict"
                )
            labels.append(label)
        return labels


def _as_index(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
