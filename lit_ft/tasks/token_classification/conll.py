"""CoNLL-style files: one token per line in whitespace- or tab-separated columns, blank lines between sentences."""

from __future__ import annotations

import collections
from collections.abc import Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import datasets

from lit_ft.errors import UserError
from lit_ft.file_errors import check_readable
from lit_ft.source import FILE_FORMATS, DataSource, bom_safe, local_path

CONLL_SUFFIXES = (".conll", ".conllu", ".txt", ".iob", ".bio")
DOCSTART = "-DOCSTART-"


def is_conll(path: str, data_format: str) -> bool:
    """Whether a local file is read as CoNLL: always for `conll`; for `auto`, CoNLL suffixes and unknown ones."""
    suffix = local_path(path).suffix.lower()
    return data_format == "conll" or suffix in CONLL_SUFFIXES or suffix not in FILE_FORMATS


def split_columns(line: str) -> tuple[list[str], bool]:
    """The columns of a line, and whether it is tab-separated.

    A line with a tab is split at tabs only, so a token keeps its spaces (`New York\tB-LOC`); other lines are
    split at any whitespace (the CoNLL-2003 layout)."""
    if "\t" not in line:
        return line.split(), False
    return [cell.strip() for cell in line.split("\t") if cell.strip()], True


def column_count(path: str | Path, encoding: str = "utf-8") -> int:
    """The number of columns most token lines have (ties: the fewest), 0 when there are no token lines.

    The most common count, not the first line's, since a token with a space adds a column to its own line."""
    counts: collections.Counter[int] = collections.Counter()
    with open(path, encoding=bom_safe(encoding)) as f:
        for line in f:
            cols = split_columns(line)[0]
            if cols and cols[0] != DOCSTART:
                counts[len(cols)] += 1
    return min(counts, key=lambda n: (-counts[n], n)) if counts else 0


def read_sentences(path: str | Path, token_index: int, tag_index: int | None, encoding: str = "utf-8",
                   columns: int | None = None) -> Iterator[tuple[list[str], list[str]]]:
    """(tokens, tags) per sentence; `-DOCSTART-` lines and runs of blank lines separate sentences.

    With `tag_index` None the tags are empty (files to predict on, with a token column only). A space-separated line
    with more than `columns` columns (default: `column_count`) is an error: it would lose a word of its token.
    """
    columns = column_count(path, encoding) if columns is None else columns
    tokens: list[str] = []
    tags: list[str] = []
    with open(path, encoding=bom_safe(encoding)) as f:
        for lineno, line in enumerate(f, 1):
            cols, tabbed = split_columns(line)
            if not cols or cols[0] == DOCSTART:
                if tokens:
                    yield tokens, tags
                tokens, tags = [], []
                continue
            if not tabbed and len(cols) > columns:
                raise UserError(
                    f"{path}:{lineno}: line {line.strip()!r} has {len(cols)} space-separated columns where the "
                    f"file's lines have {columns}, so a token with a space would lose a word; separate the columns "
                    "with tabs (a line with a tab keeps the spaces inside its token) or remove the extra column"
                )
            try:
                tokens.append(cols[token_index])
                if tag_index is not None:
                    if tag_index % len(cols) == token_index % len(cols):  # the tag column is missing on this line
                        raise IndexError(tag_index)
                    tags.append(cols[tag_index])
            except IndexError:
                raise UserError(
                    f"{path}:{lineno}: line {line.rstrip()!r} has {len(cols)} columns, but the token column is "
                    f"{token_index} and the tag column {tag_index}; set data.conll_token_index / data.conll_tag_index"
                ) from None
    if tokens:
        yield tokens, tags


def first_token_line(path: str | Path, encoding: str = "utf-8") -> tuple[int, list[str]]:
    """Line number and columns of the first token line (0, [] when there is none)."""
    with open(path, encoding=bom_safe(encoding)) as f:
        for lineno, line in enumerate(f, 1):
            cols = split_columns(line)[0]
            if cols and cols[0] != DOCSTART:
                return lineno, cols
    return 0, []


def tag_column_present(columns: int, token_index: int, tag_index: int) -> bool:
    """Whether lines of `columns` columns have a tag column distinct from the token column (else: tokens only)."""
    return columns > 0 and -columns <= tag_index < columns and tag_index % columns != token_index % columns


def _generate(path: str, token_index: int, tag_index: int | None, encoding: str, token_column: str,
              tag_column: str, columns: int, stamp: tuple[int, int]) -> Iterator[dict[str, Any]]:
    # `stamp` (size, mtime) only enters the cache key, so an edited file is read again
    for tokens, tags in read_sentences(path, token_index, tag_index, encoding, columns):
        yield {token_column: tokens, tag_column: tags} if tag_index is not None else {token_column: tokens}


def load_conll(path: str, token_column: str, tag_column: str, token_index: int = 0, tag_index: int = -1,
               encoding: str = "utf-8", key: str = "data file", need_tags: bool = False) -> datasets.Dataset:
    """A CoNLL file as rows of token and tag lists (built once with `Dataset.from_generator`, then cached).

    Without a tag column the rows hold tokens only, which only a predict split may (`need_tags` False)."""
    file = local_path(path)
    check_readable(file, path, key)
    resolved = str(file.resolve())
    columns = column_count(resolved, encoding)
    has_tags = tag_column_present(columns, token_index, tag_index)
    if need_tags and not has_tags:
        lineno, cols = first_token_line(resolved, encoding)
        raise UserError(f"{key}: '{path}' line {lineno} has {len(cols)} columns, so data.conll_tag_index={tag_index} "
                        f"names no tag column distinct from the token column {token_index}; set "
                        "data.conll_tag_index (-1: the last column) or give a file with tags")
    strings = datasets.Sequence(datasets.Value("string"))
    features = datasets.Features({token_column: strings, **({tag_column: strings} if has_tags else {})})
    stat = file.stat()
    gen_kwargs = {"path": resolved, "token_index": token_index, "tag_index": tag_index if has_tags else None,
                  "encoding": encoding, "token_column": token_column, "tag_column": tag_column,
                  "columns": columns, "stamp": (stat.st_size, stat.st_mtime_ns)}
    ds = datasets.Dataset.from_generator(_generate, features=features, gen_kwargs=gen_kwargs)
    assert isinstance(ds, datasets.Dataset)
    return ds


@dataclass
class ConllSource(DataSource):
    """A `DataSource` that also reads CoNLL files (local files only; hub datasets and json/csv/parquet as usual).

    Args:
        data_format: `conll` reads every local file as CoNLL; `auto` only .conll/.txt/.iob/.bio files and files
            whose suffix is no known format (such as `eng.testa`).
        token_column: Name of the token column the CoNLL rows get.
        tag_column: Name of the tag column the CoNLL rows get.
        token_index: Column of the token in a CoNLL line.
        tag_index: Column of the tag in a CoNLL line (negative counts from the end).
    """

    data_format: str = "auto"
    token_column: str = "tokens"
    tag_column: str = "tags"
    token_index: int = 0
    tag_index: int = -1

    @classmethod
    def wrap(cls, source: DataSource, **settings: Any) -> ConllSource:
        return cls(**{f.name: getattr(source, f.name) for f in fields(DataSource)}, **settings)

    def load(self, split: str) -> datasets.Dataset | None:
        where = self.location(split)
        explicit = self.format != "auto" and self.data_format != "conll"  # data.source.format names another format
        if where is None or self.hub or explicit or not is_conll(where, self.data_format):
            return super().load(split)
        return load_conll(where, self.token_column, self.tag_column, self.token_index, self.tag_index,
                          self.encoding, key=f"data.source.{split}", need_tags=split != "predict")
