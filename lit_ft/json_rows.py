"""JSON and JSON Lines rows read with Python's `json` (`data.source` reads every local json/jsonl file here first).

The `datasets` json builder falls back to pandas when a column mixes texts and numbers (ids `7` and `"a"`), which
reads the text `"007"` as the number 7 and `"{\"a\": 1}"` as an object, and it refuses whole numbers beyond 64
bits. Here the scalars of such a column become their text (as `str()` writes them), as a csv cell would be; other
columns keep their JSON types. Files that are not a list of objects (or JSON Lines of objects) return None: the
builder then reads them, or explains why it cannot.

The rows are kept as an Arrow file in the `datasets` cache, keyed by the file's path, size and modification time, as
the builder's reads are: a later run maps it from disk instead of parsing the JSON again, and the tokenized features
`.map` makes from it are cached next to it (a dataset held only in memory would be tokenized again every run).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import datasets
import pyarrow as pa
from datasets.fingerprint import Hasher
from datasets.table import MemoryMappedTable

from lit_ft.io import atomic_file

INT64 = 2**63


def read_json_rows(file: Path, fmt: str, encoding: str, field: str | None) -> datasets.Dataset | None:
    """The file's rows with mixed or oversized scalar columns as text; None when the file is not a list of objects
    (the caller then explains the reader's own error)."""
    stat = file.stat()
    fingerprint = Hasher.hash(
        ("lit_ft.json_rows", str(file.resolve()), stat.st_size, stat.st_mtime_ns, fmt, encoding, field))
    cached = Path(datasets.config.HF_DATASETS_CACHE) / "lit_ft_json_rows" / f"{fingerprint}.arrow"
    if not cached.is_file():
        table = _parse(file, fmt, encoding, field)
        if table is None:
            return None
        with atomic_file(cached) as tmp, pa.OSFile(str(tmp), "wb") as sink, \
                pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
    return datasets.Dataset(MemoryMappedTable.from_file(str(cached)), fingerprint=fingerprint)


def _parse(file: Path, fmt: str, encoding: str, field: str | None) -> pa.Table | None:
    """The rows as an Arrow table carrying their `datasets` features, or None (not a list of objects)."""
    try:
        text = file.read_text(encoding=encoding)
        if fmt == "jsonl" or (fmt == "json" and not text.lstrip().startswith(("[", "{"))):
            # JSON text holds no raw line break: split at \n, \r\n and \r only (not at U+2028 and the like)
            rows = [json.loads(line) for line in re.split(r"\r\n|\r|\n", text) if line.strip()]
        else:
            loaded = json.loads(text)
            rows = loaded[field] if field is not None and isinstance(loaded, dict) else loaded
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(rows, list) or not rows or not all(isinstance(r, dict) for r in rows):
        return None
    columns = list(dict.fromkeys(k for r in rows for k in r))
    mixed = {c for c in columns if _needs_text([r.get(c) for r in rows])}
    values = {c: [_as_text(r.get(c)) if c in mixed else r.get(c) for r in rows] for c in columns}
    try:
        table: pa.Table = datasets.Dataset.from_dict(values).data.table  # schema metadata holds the features
    except (TypeError, ValueError, OverflowError, ArithmeticError):
        return None
    return table


def _needs_text(values: list[Any]) -> bool:
    scalars = [v for v in values if v is not None and not isinstance(v, (list, dict))]
    kinds = {str if isinstance(v, str) else float if isinstance(v, (int, float)) else type(v) for v in scalars}
    huge = any(isinstance(v, int) and not -INT64 <= v < INT64 for v in scalars)
    return len(kinds) > 1 or huge


def _as_text(value: Any) -> Any:
    """A scalar as text; None, text, lists and objects as they are."""
    return value if value is None or isinstance(value, (str, list, dict)) else str(value)
