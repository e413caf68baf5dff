"""Rows by position: every split's rows carry their index in the split (`ROW`), through the tokenized features and
the batches into the prediction records, so records are joined to their inputs by position.

Ids are data, carried next to the row but never a key: a file may repeat them or leave them out, and each of its
rows still gets exactly one record, in input order. `check_records` holds writers to that before a file is written.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Sequence
from typing import Any

import datasets

from lit_ft.errors import InternalError

ROW = "_row"  # a row's index in its split (0-based, after validation is carved from train); private: `_` prefix
FEATURE = "_feature"  # an evaluation input's index in the split's features (a row may make several: QA windows)
SHOWN_IDS = 3


def number_split(ds: datasets.Dataset) -> datasets.Dataset:
    """The rows of a split with their index in it under `ROW` (a file's own `_row` column is replaced)."""
    if ROW in ds.column_names:
        ds = ds.remove_columns(ROW)
    return ds.add_column(ROW, list(range(len(ds))))  # type: ignore[arg-type]


def row_collate(collate: Callable[[list[dict[str, Any]]], dict[str, Any]], rows: list[dict[str, Any]]
                ) -> dict[str, Any]:
    """`collate` on rows without their `ROW` (and `FEATURE`, on evaluation rows), which the batch gets as lists (one
    per batch item), so a task's collate never has to know about them."""
    positions = [row.pop(ROW, None) for row in rows]  # rows of a TaskDataModule's split always have it
    features = [row.pop(FEATURE, None) for row in rows]
    batch = collate(rows)
    for key, values in ((ROW, positions), (FEATURE, features)):
        if values and values[0] is not None:
            batch[key] = values
    return batch


def with_rows(records: list[dict[str, Any]], batch: dict[str, Any], task: str) -> list[dict[str, Any]]:
    """A batch's prediction records with the `ROW` and `FEATURE` of the batch item each was made from (one record
    per item)."""
    positions = batch.get(ROW)
    if positions is None:
        raise InternalError(f"a batch of task '{task}' has no `{ROW}`: its rows did not come from a TaskDataModule "
                            "split")
    if len(records) != len(positions):
        raise InternalError(f"task '{task}' made {len(records)} prediction records for a batch of {len(positions)} "
                            "inputs; `Task.predictions` must return one record per batch item, in batch order")
    features = batch.get(FEATURE) or [None] * len(positions)
    return [{**record, ROW: row, FEATURE: feature}
            for record, row, feature in zip(records, positions, features, strict=True)]


def in_row_order(records: list[dict[str, Any]], repeats_allowed: bool) -> list[dict[str, Any]]:
    """Records sorted by `ROW`, the windows of one row by `FEATURE`. With `repeats_allowed` (records gathered from
    several processes, where a distributed sampler may pad with repeated inputs) an input's records after its first
    are dropped, by its row and feature index, never by id; tasks that make several records per row merge them
    afterwards (`Task.merge_rows`)."""
    ordered = sorted(records, key=lambda r: (r[ROW], r.get(FEATURE) or 0))
    if not repeats_allowed:
        return ordered
    seen: set[tuple[int, int | None]] = set()
    kept = []
    for record in ordered:
        key = (record[ROW], record.get(FEATURE))
        if key not in seen:
            seen.add(key)
            kept.append(record)
    return kept


def without_positions(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records as written: the private `ROW` / `FEATURE` keys dropped once the order is checked."""
    return [{k: v for k, v in r.items() if k not in (ROW, FEATURE)} for r in records]


def check_records(records: Sequence[dict[str, Any]], rows: int, what: str, complete: bool = True) -> None:
    """The invariant of every prediction file: exactly one record per input row, rows 0..rows-1 in order. A run
    that evaluates only some batches (`complete=False`: `limit_test_batches`, `limit_predict_batches`) may leave rows
    out, but never repeats, reorders or invents one."""
    got = [r.get(ROW) for r in records]
    seen = {g for g in got if isinstance(g, int) and 0 <= g < rows}
    expected = list(range(rows)) if complete else sorted(seen)
    ok = got == expected
    wrong = next((i for i, (g, e) in enumerate(zip(got, expected, strict=False)) if g != e),
                 min(len(got), len(expected)))
    if not ok:
        raise InternalError(f"{what}: {len(records)} records for {rows} input rows (first wrong at position {wrong}: "
                            f"row {got[wrong] if wrong < len(got) else None}); not writing a file that would "
                            "misplace predictions. Please report this with the run's config")


def id_notes(ids: Sequence[Any]) -> str:
    """`ids 'a', 'b' repeat; 1 row has no id`, or "" when every row has its own id."""
    counts = collections.Counter(i for i in ids if i is not None and i != "")
    repeated = [i for i, n in counts.items() if n > 1]
    missing = sum(1 for i in ids if i is None or i == "")
    notes = []
    if repeated:
        shown = ", ".join(repr(i) for i in repeated[:SHOWN_IDS])
        more = f" and {len(repeated) - SHOWN_IDS} more" if len(repeated) > SHOWN_IDS else ""
        notes.append(f"{'id' if len(repeated) == 1 else 'ids'} {shown}{more} repeat")
    if missing:
        notes.append(f"{missing} {'row has' if missing == 1 else 'rows have'} no id")
    return "; ".join(notes)


def row_name(row_id: Any, row: int) -> str:
    """How an error names a row: `row '8'` where the id is the row's number (files without ids), else the position
    with the id (`row 3 (id 'a')`, `row 3 (no id)`), which stays unambiguous when ids repeat or are missing."""
    if row_id is None or row_id == "":
        return f"row {row} (no id)"
    return f"row '{row_id}'" if str(row_id) == str(row) else f"row {row} (id '{row_id}')"
