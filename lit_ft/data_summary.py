"""The data lines a run prints before training: rows per split, label counts, inputs cut at max_length.

Its pieces (`split_rows`, `inputs_at_limit`, `format_counts`) also make the fuller `lit_ft inspect-data` report.
"""

from __future__ import annotations

from typing import Any

from lit_ft.rows import id_notes

SPLITS = ("train", "validation", "test", "predict")
MAX_LABELS_SHOWN = 6


def data_summary(datamodule: Any) -> list[str]:
    """`data: train 400 rows (negative 200, positive 200), validation 100, ...; 0 of 620 inputs reach ...`; a split
    whose ids repeat or are missing says so (`predict 4 (id 'a' repeat)`).

    Reads only splits the data module has already loaded (lit_ft's `prepare_data` loads every configured one for
    `fit`, and only its own split for `validate`, `test` and `predict`);
    anything but a lit_ft TaskDataModule gives no lines.
    """
    features = getattr(datamodule, "_features", None)
    if not isinstance(features, dict) or not features:
        return []
    parts, at_limit, inputs = [], 0, 0
    limit = getattr(datamodule, "max_length", None)
    for split in SPLITS:
        ds = features.get(split)
        if ds is None:
            continue
        part = f"{split} {split_rows(datamodule, split, ds):,}"
        counts = datamodule.label_counts(split) if split == "train" else {}
        notes = [format_counts(counts)] if counts else []
        notes += getattr(datamodule, "split_notes", lambda _: [])(split)  # rows the task's encoding dropped
        raw = datamodule.raw(split)
        ids = id_notes(raw["id"]) if raw is not None else ""  # allowed: rows are joined by position, ids are data
        if ids:
            notes.append(ids)
        if notes:
            part += f" ({'; '.join(notes)})"
        parts.append(part)
        if limit and "length" in ds.column_names:
            inputs += len(ds)
            at_limit += inputs_at_limit(ds, limit)
    line = "data: " + ", ".join(parts) + " rows"
    if limit and inputs:
        line += f"; {at_limit:,} of {inputs:,} inputs reach max_length {limit} (truncated)"
    packed = getattr(datamodule, "packing_summary", lambda: None)()  # tasks that pack training examples
    return [line + (f"; {packed}" if packed else "")]


def split_rows(datamodule: Any, split: str, features: Any) -> int:
    """Rows of a split as read (a task may make several inputs of one row, as QA windows)."""
    raw = datamodule.raw(split)
    return len(raw) if raw is not None else len(features)


def inputs_at_limit(features: Any, limit: int) -> int:
    """Tokenized inputs of a split that reach `max_length`: cut there, unless they were exactly that long."""
    return sum(1 for n in features["length"] if n >= limit)


def format_counts(counts: dict[str, int], shown: int = MAX_LABELS_SHOWN) -> str:
    """`negative 231, positive 169`, most frequent first, the rest counted."""
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    text = ", ".join(f"{name} {n:,}" for name, n in ranked[:shown])
    rest = len(ranked) - shown
    return text + (f", {rest} more labels" if rest > 0 else "")
