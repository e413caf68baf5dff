"""Why a local data file could not be read, as one line: the file, the line where known, and what to change.

`datasets` wraps every parse failure into "An error occurred while generating the dataset" with the real cause
(pandas, pyarrow, a codec) two or three exceptions down. These helpers check what can be checked before
loading, translate the cause after a failure, and catch files that load but cannot be what the user meant
(a `;`-separated CSV read as one column, a JSON object whose rows sit under a key).
"""

from __future__ import annotations

import contextlib
import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path

import datasets

from lit_ft.errors import UserError

_SEPARATORS = {";": "';'", "\t": "a tab", "|": "'|'"}


def check_readable(file: Path, path: str, key: str) -> None:
    """A file that is missing, a directory or empty fails before `datasets` sees it."""
    if not file.exists():
        raise UserError(f"{key}: '{path}' does not exist; fix the path or set {key} to null")
    if file.is_dir():
        raise UserError(f"{key}: '{path}' is a directory; name a data file in it")
    if file.stat().st_size < 4096 and not file.read_bytes().strip():
        raise UserError(f"{key}: '{path}' is empty; give a file with rows (csv: a header line, then one line per row)")


@contextlib.contextmanager
def quiet_datasets_logs() -> Iterator[None]:
    """`datasets` logs each parse failure before raising it; lit_ft reports it once, as one line."""
    level = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity(datasets.logging.CRITICAL)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(level)


def _chain(err: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = err
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


def _root_message(chain: list[BaseException]) -> str:
    """The most specific message of a chain (the first cause that says more than "an error occurred")."""
    for err in reversed(chain):
        text = " ".join(str(err).split())
        if text and "An error occurred while generating" not in text:
            return text
    return type(chain[-1]).__name__


def explain_read_error(err: BaseException, file: Path, path: str, key: str, fmt: str, encoding: str) -> UserError:
    """The UserError for a `datasets` load failure of a local file."""
    chain = _chain(err)
    where = f"{key}: '{path}'"
    decode = next((e for e in chain if isinstance(e, UnicodeDecodeError)), None)
    if decode is not None or "Invalid UTF8" in _root_message(chain):
        return _encoding_error(file, where, encoding)
    message = _root_message(chain)
    if "corresponds to no data" in message:
        return UserError(f"{where} has no rows (a header only, or an empty list); add rows or set {key} to null")
    if fmt in ("csv", "tsv"):
        return _csv_error(message, where)
    if fmt in ("json", "jsonl"):
        return _json_error(file, where, message, encoding, fmt)
    if fmt == "parquet":
        return UserError(f"{where} is not a readable parquet file ({message}); re-write it, or set data.source.format "
                         "if it is another format")
    return UserError(f"{where}: could not read it as {fmt}: {message}")


def _encoding_error(file: Path, where: str, encoding: str) -> UserError:
    raw = file.read_bytes()
    try:
        raw.decode(encoding)
        detail = ""
    except UnicodeDecodeError as bad:
        line = raw[: bad.start].count(b"\n") + 1
        detail = f" at line {line} (byte {raw[bad.start:bad.start + 1]!r})"
    except LookupError:
        return UserError(f"data.source.encoding '{encoding}' is not a known text encoding; use for example utf-8 or "
                         "latin-1")
    return UserError(f"{where} is not {encoding} text{detail}; set data.source.encoding to the file's encoding "
                     "(for example latin-1 or cp1252)")


def _csv_error(message: str, where: str) -> UserError:
    quote = re.search(r"EOF inside string starting at row (\d+)", message)
    if quote:
        return UserError(f"{where}: a quoted field starting at line {int(quote.group(1)) + 1} never closes; close "
                         'the quote (a quote inside a quoted field is written "")')
    fields = re.search(r"Expected (\d+) fields in line (\d+), saw (\d+)", message)
    if fields:
        n, line, saw = fields.groups()
        return UserError(f"{where}: line {line} has {saw} fields but the lines before have {n}; quote fields that "
                         "contain the delimiter, or set data.source.delimiter")
    return UserError(f"{where} is not valid CSV ({message}); fix the file or set data.source.format")


def _json_error(file: Path, where: str, message: str, encoding: str, fmt: str) -> UserError:
    text = file.read_text(encoding=encoding, errors="replace")
    lines = text.splitlines()
    first = next((line for line in lines if line.strip()), "")
    try:
        json.loads(first)
        one_row_per_line = True
    except json.JSONDecodeError:
        one_row_per_line = fmt == "jsonl"
    if one_row_per_line:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                json.loads(line)
            except json.JSONDecodeError as bad:
                return UserError(f"{where}: line {number} is not valid JSON ({bad.msg}); JSON Lines need one complete "
                                 "object per line: fix that line")
    else:
        try:
            json.loads(text)
        except json.JSONDecodeError as bad:
            return UserError(f"{where}: invalid JSON at line {bad.lineno}, column {bad.colno} ({bad.msg}); fix it")
    return UserError(f"{where}: could not read the JSON rows ({message}); give a list of objects, JSON Lines, or "
                     "set data.source.field to the key that holds the rows")


def check_shape(ds: datasets.Dataset, file: Path, path: str, key: str, fmt: str, field: str | None) -> None:
    """Files that load but cannot be what the user meant."""
    where = f"{key}: '{path}'"
    columns = ds.column_names
    if fmt in ("csv", "tsv") and "__index_level_0__" in columns:
        line = _first_long_line(file, "\t" if fmt == "tsv" else ",")
        raise UserError(f"{where}: line {line} has more fields than the header {columns[1:]}; quote fields that "
                        "contain the delimiter, or set data.source.delimiter")
    if fmt == "csv" and len(columns) == 1:
        sep = next((s for s in _SEPARATORS if s in columns[0]), None)
        if sep is not None:
            fix = "data.source.format tsv" if sep == "\t" else f"data.source.delimiter '{sep}'"
            raise UserError(f"{where} has one column '{columns[0]}': the file looks separated by {_SEPARATORS[sep]}, "
                            f"not commas; set {fix}")
    if fmt == "json" and field is None and len(ds) == 1:
        nested = [c for c in columns if _is_rows(ds[0][c])]
        if nested:
            raise UserError(f"{where} holds one JSON object (keys {columns}) whose rows are under '{nested[0]}'; set "
                            f"data.source.field {nested[0]}")
    if len(ds) == 0:
        raise UserError(f"{where} has no rows; add rows or set {key} to null")


def _first_long_line(file: Path, delimiter: str) -> int | str:
    """1-based line of the first CSV record with more fields than the header ('?' when none is found)."""
    with open(file, newline="", encoding="utf-8", errors="replace") as f:
        reader = csv.reader(f, delimiter=delimiter)
        header = next(reader, [])
        for record in reader:
            if len(record) > len(header):
                return reader.line_num
    return "?"


def _is_rows(value: object) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)
