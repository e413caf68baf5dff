"""Inputs seen twice: rows that repeat within a split, and validation/test rows whose input is also in train.

A row's input is what the task's data module says makes two rows the same example (`example_keys`: for
classification the text, not the label), compared with case and runs of whitespace ignored, so `Great film!` and
`great  film!` count as one. A validation or test row also in train scores what the model memorised, not how it
does on new inputs: `fit` warns of them (the pre-flight rule `eval_rows_in_train`), `lit_ft inspect-data` lists
them.
"""

from __future__ import annotations

from typing import Any

EVAL_SPLITS = ("validation", "test")
CHUNK = 1000  # raw rows per `example_keys` call (the call is batched, like `encode`)


def normalised(key: str) -> str:
    """`key` with case folded and every run of whitespace made one space, ends stripped."""
    return " ".join(key.casefold().split())


def input_keys(data: Any, split: str) -> list[str] | None:
    """The normalised input of every row of a split, in row order; None when the split is not configured."""
    raw = data.raw(split)
    if raw is None:
        return None
    keys: list[str] = []
    for start in range(0, len(raw), CHUNK):
        keys += data.example_keys(raw[start : start + CHUNK])
    return [normalised(k) for k in keys]


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
