"""Where a task's rows come from: a Hugging Face hub dataset or local files, one per split."""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import datasets

from lit_ft.domains import NonNegativeInt, OpenUnitInterval
from lit_ft.errors import UserError
from lit_ft.file_errors import check_readable, check_shape, explain_read_error, quiet_datasets_logs
from lit_ft.json_rows import read_json_rows

SPLITS = ("train", "validation", "test", "predict")

FileFormat = Literal["auto", "csv", "tsv", "json", "jsonl", "parquet", "text"]
# format -> (datasets builder, extra builder kwargs)
BUILDERS: dict[str, tuple[str, dict[str, Any]]] = {
    "csv": ("csv", {}),
    "tsv": ("csv", {"sep": "\t", "quoting": 3}),  # 3 = csv.QUOTE_NONE: GLUE-style TSV has bare quotes
    "json": ("json", {}),
    "jsonl": ("json", {}),
    "parquet": ("parquet", {}),
    "text": ("text", {}),
}
# file suffix -> format, for `format: auto`
FILE_FORMATS: dict[str, str] = {f".{name}": name for name in BUILDERS if name != "text"} | {".txt": "text"}
TEXT_COLUMN = "text"  # the column a plain text file's lines arrive in

@dataclass
class DataSource:
    """Where the rows of each split come from.

    Args:
        hub: Hugging Face hub dataset name (for example `glue` or `stanfordnlp/sst2`). When set, `train`,
            `validation`, `test` and `predict` are split names of that dataset; otherwise they are local files
            (.csv, .tsv, .json, .jsonl, .parquet, .txt; any other suffix with `format`).
        hub_config: The hub dataset's configuration name (for example `sst2`).
        train: Training split name or file.
        validation: Validation split name or file; when missing, `validation_fraction` of train is held out.
        test: Test split name or file.
        predict: Split name or file to predict on (labels not needed).
        validation_fraction: Share of train held out for validation when no validation split is given.
        seed: Seed of that held-out split.
        format: Format of the local files: `auto` (from the suffix), `csv`, `tsv`, `json` (a list of rows, or
            rows under `field`), `jsonl` (one row per line), `parquet` or `text` (one example per line).
        field: Key of the rows list in a JSON file holding one object (for example `data` for
            `{"version": 2, "data": [...]}`).
        encoding: Text encoding of local csv/tsv/text files (for example `latin-1`).
        delimiter: Field separator of local csv files when not a comma (for example `;`).
        column_names: Column names of local csv/tsv files that have no header row.
    """

    hub: str | None = None
    hub_config: str | None = None
    train: str | None = None
    validation: str | None = None
    test: str | None = None
    predict: str | None = None
    validation_fraction: OpenUnitInterval = 0.1
    seed: NonNegativeInt = 42
    format: FileFormat = "auto"
    field: str | None = None
    encoding: str = "utf-8"
    delimiter: str | None = None
    column_names: list[str] | None = None

    def __post_init__(self) -> None:
        # jsonargparse turns `--data.source.X null` given after a config value into the string "None"
        for name in ("hub", "hub_config", "field", "delimiter", *SPLITS):
            if getattr(self, name) in ("None", "null"):
                setattr(self, name, None)
        try:
            codecs.lookup(self.encoding)
        except LookupError:
            raise UserError(f"data.source.encoding '{self.encoding}' is not a known text encoding; use for example "
                            "utf-8, latin-1 or cp1252") from None
        if not 0 < self.validation_fraction < 1:
            raise UserError(f"data.source.validation_fraction must be between 0 and 1 (got {self.validation_fraction})"
                            "; 0.1 holds out a tenth of train")

    def location(self, split: str) -> str | None:
        return getattr(self, split)

    def describe(self, split: str) -> str:
        where = self.location(split)
        if where is None:  # rows given in memory: a `lit_ft serve` request's (`TaskDataModule.request_features`)
            return "the request's inputs"
        return f"hub dataset '{self.hub}' split '{where}'" if self.hub else f"file '{where}'"

    def file_format(self, path: str) -> str | None:
        """The format a local file is read in: `format`, or the one its suffix names (None: unknown suffix)."""
        return self.format if self.format != "auto" else FILE_FORMATS.get(local_path(path).suffix.lower())

    def load(self, split: str) -> datasets.Dataset | None:
        """Load one split as a `datasets.Dataset` (cached by `datasets`), or None when not configured."""
        where = self.location(split)
        if where is None:
            return None
        if self.hub:
            return _load_hub(self.hub, self.hub_config, where, key=f"data.source.{split}")
        return load_file(where, self.file_format(where), key=f"data.source.{split}", encoding=self.encoding,
                         column_names=self.column_names, field=self.field, delimiter=self.delimiter)


def _load_hub(name: str, config: str | None, split: str, key: str = "data.source") -> datasets.Dataset:
    try:
        with quiet_datasets_logs():
            ds = datasets.load_dataset(name, config, split=split)
    except Exception as err:
        unknown = re.search(r"[Uu]nknown split \"?([^\".]+)\"?\. Should be one of (\[[^\]]*\])", str(err))
        if unknown:
            raise UserError(f"{key}: hub dataset '{name}' has no split '{split}'; its splits are {unknown.group(2)}: "
                            f"fix {key}") from err
        reason = " ".join(str(err).split())[:300]
        raise UserError(
            f"could not load hub dataset '{name}' (config {config!r}, split '{split}'): {reason}. Without network, "
            "add the recipe's offline data piece (--config configs/offline/<recipe>.yaml, where it ships one) or "
            "point data.source.train/validation/test/predict at local files and set data.source.hub to null"
        ) from err
    assert isinstance(ds, datasets.Dataset)
    return ds


RESOURCE_SCHEME = "lit_ft://"
PACKAGE_SCHEME = "package://"


def bom_safe(encoding: str) -> str:
    """The codec that reads `encoding` text: `utf-8-sig` for UTF-8, which drops a leading byte-order mark (editors
    on Windows write one) instead of gluing it to the first token or key."""
    return "utf-8-sig" if encoding.lower().replace("_", "-") in ("utf-8", "utf8") else encoding


def local_path(path: str) -> Path:
    """A local path; `lit_ft://NAME` names a file shipped in lit_ft's resources folder, `package://PKG/NAME` a file
    inside the importable package PKG (a plugin's own fixtures, installed or loaded with `--plugins`)."""
    if path.startswith(RESOURCE_SCHEME):
        return Path(__file__).parent / "resources" / path[len(RESOURCE_SCHEME) :]
    if path.startswith(PACKAGE_SCHEME):
        return _package_file(path)
    return Path(path).expanduser()


def _package_file(path: str) -> Path:
    import importlib.util

    package, _, name = path[len(PACKAGE_SCHEME) :].partition("/")
    try:
        spec = importlib.util.find_spec(package) if package.isidentifier() else None
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"'{path}': no importable package '{package}'; install it, load it with `--plugins "
                        "path/to/package_dir`, or give a file path")
    return Path(next(iter(spec.submodule_search_locations))) / name


def load_file(
    path: str, fmt: str | None = None, key: str = "data file", encoding: str = "utf-8",
    column_names: list[str] | None = None, field: str | None = None, delimiter: str | None = None,
) -> datasets.Dataset:
    """Load a local csv/tsv/json/jsonl/parquet/text file with the `datasets` builder (converted once, then cached).

    `fmt` None means: from the suffix. A file that cannot be read fails with one line naming the file, the line
    where known, and the setting to change (see `lit_ft.file_errors`).
    """
    file = local_path(path)
    check_readable(file, path, key)
    fmt = fmt or FILE_FORMATS.get(file.suffix.lower())
    if fmt is None:
        raise UserError(f"{key}: '{path}' has an unknown suffix; use one of {sorted(FILE_FORMATS)} or name the "
                        f"format with data.source.format ({', '.join(BUILDERS)})")
    builder, kwargs = BUILDERS[fmt]
    kwargs = {**kwargs, **_format_options(fmt, encoding, column_names, field, delimiter)}
    with quiet_datasets_logs():
        try:
            if fmt in ("csv", "tsv"):
                kwargs["features"] = _text_columns(file, kwargs)
            listed = read_json_rows(file, fmt, encoding, field) if fmt in ("json", "jsonl") else None
            ds = listed if listed is not None else datasets.load_dataset(
                builder, data_files={"data": str(file.resolve())}, split="data", **kwargs)
        except Exception as err:
            raise explain_read_error(err, file, path, key, fmt, encoding) from err
    assert isinstance(ds, datasets.Dataset)
    if fmt == "text":  # one example per line; blank lines separate nothing
        ds = ds.filter(lambda row: bool(row[TEXT_COLUMN].strip()), desc="skipping blank lines")
    check_shape(ds, file, path, key, fmt, field)
    return ds


def _text_columns(file: Path, options: dict[str, Any]) -> datasets.Features | None:
    """Every column of a csv/tsv file as text (read from its first rows), so no cell is read as a number. None when
    the rows have more fields than the header (pandas then makes an index of the first field): the file is read as
    it is, and `check_shape` names the line."""
    import pandas as pd

    head = pd.read_csv(file, nrows=2, sep=options.get("sep", ","), quoting=options.get("quoting", 0), dtype=str,
                       encoding=options["encoding"], names=options.get("column_names"))
    if not isinstance(head.index, pd.RangeIndex):
        return None
    return datasets.Features({str(name): datasets.Value("string") for name in head.columns})


def _format_options(fmt: str, encoding: str, column_names: list[str] | None, field: str | None,
                    delimiter: str | None) -> dict[str, Any]:
    if fmt in ("csv", "tsv"):
        # cells are text as written: no number guessing ("007" stays "007", "1.50" stays "1.50") and no pandas
        # missing-value words ("NA", "null", "None" are texts); only an empty cell is missing (see `_text_columns`)
        options: dict[str, Any] = {"encoding": bom_safe(encoding), "keep_default_na": False, "na_values": [""]}
        if column_names:
            options["column_names"] = column_names
        if delimiter:
            options["sep"] = delimiter
        return options
    if fmt == "json" and field:
        return {"field": field}
    if fmt == "text":
        return {"encoding": bom_safe(encoding)}
    return {}
