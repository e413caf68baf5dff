"""Where a task's rows come from: a Hugging Face hub dataset or local files, one per split."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from lit_ft.errors import UserError

SPLITS = ("train", "validation", "test", "predict")

# file suffix -> (datasets builder, extra builder kwargs)
FILE_FORMATS: dict[str, tuple[str, dict[str, Any]]] = {
    ".csv": ("csv", {}),
    ".tsv": ("csv", {"sep": "\t", "quoting": 3}),  # 3 = csv.QUOTE_NONE: GLUE-style TSV has bare quotes
    ".json": ("json", {}),
    ".jsonl": ("json", {}),
    ".parquet": ("parquet", {}),
}


@dataclass
class DataSource:
    """Where the rows of each split come from.

    Args:
        hub: Hugging Face hub dataset name (for example `glue` or `stanfordnlp/sst2`). When set, `train`,
            `validation`, `test` and `predict` are split names of that dataset; otherwise they are local files
            (.csv, .tsv, .json, .jsonl, .parquet).
        hub_config: The hub dataset's configuration name (for example `sst2`).
        train: Training split name or file.
        validation: Validation split name or file; when missing, `validation_fraction` of train is held out.
        test: Test split name or file.
        predict: Split name or file to predict on (labels not needed).
        validation_fraction: Share of train held out for validation when no validation split is given.
        seed: Seed of that held-out split.
        encoding: Text encoding of local csv/tsv files (for example `latin-1`).
        column_names: Column names of local csv/tsv files that have no header row.
    """

    hub: str | None = None
    hub_config: str | None = None
    train: str | None = None
    validation: str | None = None
    test: str | None = None
    predict: str | None = None
    validation_fraction: float = 0.1
    seed: int = 42
    encoding: str = "utf-8"
    column_names: list[str] | None = None

    def __post_init__(self) -> None:
        # jsonargparse turns `--data.source.X null` given after a config value into the string "None"
        for name in ("hub", "hub_config", *SPLITS):
            if getattr(self, name) in ("None", "null"):
                setattr(self, name, None)

    def location(self, split: str) -> str | None:
        return getattr(self, split)

    def describe(self, split: str) -> str:
        where = self.location(split)
        return f"hub dataset '{self.hub}' split '{where}'" if self.hub else f"file '{where}'"

    def load(self, split: str) -> datasets.Dataset | None:
        """Load one split as a `datasets.Dataset` (cached by `datasets`), or None when not configured."""
        where = self.location(split)
        if where is None:
            return None
        if self.hub:
            return _load_hub(self.hub, self.hub_config, where)
        return load_file(where, encoding=self.encoding, column_names=self.column_names, key=f"data.source.{split}")


def _load_hub(name: str, config: str | None, split: str) -> datasets.Dataset:
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except Exception as err:
        raise RuntimeError(
            f"could not load hub dataset '{name}' (config {config!r}, split '{split}'): {err}. Without network, "
            "point data.source.train/validation/test at local files and set data.source.hub to null"
        ) from err
    assert isinstance(ds, datasets.Dataset)
    return ds


RESOURCE_SCHEME = "lit_ft://"


def local_path(path: str) -> Path:
    """A local path; `lit_ft://NAME` names a file shipped in the package's resources folder."""
    if path.startswith(RESOURCE_SCHEME):
        return Path(__file__).parent / "resources" / path[len(RESOURCE_SCHEME) :]
    return Path(path).expanduser()


def load_file(
    path: str, encoding: str = "utf-8", column_names: list[str] | None = None, key: str = "data file"
) -> datasets.Dataset:
    """Load a local csv/tsv/json/jsonl/parquet file with the `datasets` builder (converted once, then cached)."""
    file = local_path(path)
    if not file.is_file():
        raise FileNotFoundError(f"{key}: '{path}' does not exist; fix the path or set {key} to null")
    fmt = FILE_FORMATS.get(file.suffix.lower())
    if fmt is None:
        raise UserError(f"{key}: '{path}' has an unsupported suffix; use one of {sorted(FILE_FORMATS)}")
    builder, kwargs = fmt
    if builder == "csv":
        kwargs = {**kwargs, "encoding": encoding}
        if column_names:
            kwargs["column_names"] = column_names
    try:
        ds = datasets.load_dataset(builder, data_files={"data": str(file.resolve())}, split="data", **kwargs)
    except Exception as err:
        raise UserError(f"{key}: could not read '{path}' as {builder}: {err}") from err
    assert isinstance(ds, datasets.Dataset)
    return ds
