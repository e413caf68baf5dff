"""Inputs seen twice: rows that repeat within a split, and validation/test rows whose input is also in train.

A row's input is what the task's data module says makes two rows the same example (`example_keys`: for
classification the text, not the label), compared with case and runs of whitespace ignored, so `Great film!` and
`great  film!` count as one. A validation or test row also in train scores what the model memorised, not how it
does on new inputs: `fit` warns of them (the pre-flight rule `eval_rows_in_train`), `lit_ft inspect-data` lists
them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

EVAL_SPLITS = ("validation", "test")
CHUNK = 1000  # raw rows per `example_keys` call (the call is batched, like `encode`)


def normalised(key: str) -> str:
    """`key` with case folded and every run of whitespace made one space, ends stripped."""
    return " ".join(key.casefold().split())


def batched(per_rows: Callable[[Any], list[str] | None], raw: Any) -> list[str] | None:
    """A batched data-module hook (`example_keys`, `example_labels`) over every row of `raw`, in row order; None when
    the hook gives None (the task has no such value)."""
    values: list[str] = []
    for start in range(0, len(raw), CHUNK):
        found = per_rows(raw[start : start + CHUNK])
        if found is None:
            return None
        values += found
    return values


def input_keys(data: Any, split: str) -> list[str] | None:
    """The normalised input of every row of a split, in row order; None when the split is not configured."""
    raw = data.raw(split)
    if raw is None:
        return None
    return [normalised(k) for k in batched(data.example_keys, raw) or []]


def rows_in_train(data: Any) -> dict[str, tuple[list[int], int]]:
    """Per configured validation/test split: the rows (positions) whose input is also a training input, and the
    split's row count."""
    train = input_keys(data, "train")
    if not train:
        return {}
    seen = set(train)
    found = {}
    for split in EVAL_SPLITS:
        keys = input_keys(data, split)
        if keys is not None:
            found[split] = ([i for i, k in enumerate(keys) if k in seen], len(keys))
    return found
