"""The data lines a run prints before training: rows per split, label counts, inputs cut at max_length."""

from __future__ import annotations

from typing import Any

SPLITS = ("train", "validation", "test", "predict")
MAX_LABELS_SHOWN = 6


def data_summary(datamodule: Any) -> list[str]:
    """`data: train 400 rows (negative 200, positive 200), validation 100, ...; 0 of 620 inputs reach ...`.

    Reads only splits the data module has already loaded (lit_ft's `prepare_data` loads every configured one);
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
        raw = datamodule.raw(split)
        part = f"{split} {len(raw) if raw is not None else len(ds):,}"
        counts = datamodule.label_counts(split) if split == "train" else {}
        if counts:
            part += f" ({_counts(counts)})"
        parts.append(part)
        if limit and "length" in ds.column_names:
            lengths = ds["length"]
            inputs += len(lengths)
            at_limit += sum(1 for n in lengths if n >= limit)
    line = "data: " + ", ".join(parts) + " rows"
    if limit and inputs:
        line += f"; {at_limit:,} of {inputs:,} inputs reach max_length {limit} (truncated)"
    return [line]


def _counts(counts: dict[str, int]) -> str:
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    shown = ", ".join(f"{name} {n:,}" for name, n in ranked[:MAX_LABELS_SHOWN])
    rest = len(ranked) - MAX_LABELS_SHOWN
    return shown + (f", {rest} more labels" if rest > 0 else "")
