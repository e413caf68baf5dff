"""`POST /predict`: inputs -> the records `lit_ft predict` writes, through the task's own hooks.

A request's inputs become rows (`Task.serve_rows`), the rows the data module's predict split
(`TaskDataModule.request_features`: its `encode`), the features one batch (its `collate`), and the batch records
(`Task.forward`, `Task.predictions`, `Task.merge_rows`), each joined to its input fields as `lit_ft predict` joins
them. Several requests batched by the server are encoded and run as one batch and split again.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from lit_ft.errors import UserError
from lit_ft.rows import ROW, in_row_order, row_collate, with_rows, without_positions
from lit_ft.serving.loaded import Loaded
from lit_ft.training.predictions import with_inputs

TooLong = Literal["truncate", "refuse"]
TRUNCATED = "truncated"  # the flag a record carries when its input was cut to the model's length


def checked_rows(loaded: Loaded, inputs: list[Any], too_long: TooLong) -> dict[str, list[Any]]:
    """One request's inputs as rows, encoded once to check them: a bad input (or, with `refuse`, one longer than
    the model takes) is a UserError here, before it joins a batch with other requests."""
    rows = loaded.task.serve_rows(inputs, loaded.datamodule)
    features = loaded.datamodule.request_features(rows, as_split=False)
    if too_long == "refuse":
        for feature in features:
            if _cut(feature, loaded.datamodule.max_length):
                raise UserError(f"input {feature[ROW]} is longer than the model takes (data.max_length="
                                f"{loaded.datamodule.max_length} tokens); shorten it, or start the server with "
                                "--too_long truncate")
    return rows


def _cut(feature: dict[str, Any], max_length: int) -> bool:
    """Whether an input lost tokens to the length limit: the encoding's own flag where it keeps one, else it
    reaches the limit (an input of exactly `max_length` tokens counts too)."""
    if TRUNCATED in feature:
        return bool(feature[TRUNCATED])
    return len(feature.get("input_ids") or []) >= max_length


def records_for(loaded: Loaded, requests: list[dict[str, list[Any]]]) -> list[list[dict[str, Any]]]:
    """The prediction records of several requests' rows (from `checked_rows`), one list per request, in order."""
    sizes = [len(next(iter(rows.values()), [])) for rows in requests]
    keys = list(dict.fromkeys(k for rows in requests for k in rows))
    merged = {k: [v for rows, n in zip(requests, sizes, strict=True) for v in rows.get(k, [None] * n)] for k in keys}
    if loaded.datamodule.id_column not in merged:  # each request numbers its own inputs from 0
        merged[loaded.datamodule.id_column] = [str(i) for n in sizes for i in range(n)]
    records = _records(loaded, merged)
    out, start = [], 0
    for n in sizes:
        out.append(records[start:start + n])
        start += n
    return out


def _records(loaded: Loaded, rows: dict[str, list[Any]]) -> list[dict[str, Any]]:
    features = loaded.datamodule.request_features(rows)
    cut = {f[ROW] for f in features if _cut(f, loaded.datamodule.max_length)}
    batch = row_collate(loaded.datamodule.collate, features)
    with torch.inference_mode():
        outputs = loaded.task.forward(loaded.model, batch)
        made = loaded.task.predictions(loaded.model, batch, outputs)
    ordered = loaded.task.merge_rows(in_row_order(with_rows(made, batch, loaded.task.name), repeats_allowed=False))
    fields = loaded.datamodule.prediction_inputs("predict")
    positions = [r[ROW] for r in ordered]
    return [{**with_inputs(r, fields[row] if fields else {}), TRUNCATED: row in cut}
            for row, r in zip(positions, without_positions(ordered), strict=True)]
