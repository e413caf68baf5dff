"""The base every task's DataModule inherits: source -> rows -> tokenized features -> batches."""

from __future__ import annotations

import collections
import functools
import json
from typing import Any, ClassVar

import datasets
import torch
from datasets.fingerprint import Hasher
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, Sampler
from transformers import DataCollatorWithPadding, PreTrainedTokenizerBase

from lit_ft.adapters.datasets import dataset_fingerprint
from lit_ft.backbone import load_tokenizer, pad_with_eos, position_limit
from lit_ft.data_summary import inputs_at_limit
from lit_ft.domains import NonNegativeInt, PositiveInt
from lit_ft.errors import InternalError, UserError
from lit_ft.rows import ROW, number_split, row_collate, row_name
from lit_ft.sampler import (
    EvalRows,
    LengthGroupedBatchSampler,
    ResumableLoader,
    ShardedEvalBatchSampler,
    flagged_collate,
)
from lit_ft.source import TEXT_COLUMN, DataSource
from lit_ft.task import Batch

DEFAULT_BACKBONE = "sentence-transformers/all-MiniLM-L6-v2"
ALL_SPLITS = ("train", "validation", "test", "predict")
STAGE_SPLITS = {"fit": ("train", "validation"), "validate": ("validation",), "test": ("test",), "predict": ("predict",)}
# the column settings a data module conventionally names its inputs by -> their key in a prediction record
DEFAULT_INPUT_FIELDS = {"text_column": "text", "text_pair_column": "text_pair", "label_column": "gold_label"}
# settings that change batching but not the tokenized features, so they stay out of the cache fingerprint
_BATCHING_ARGS = {"batch_size", "eval_batch_size", "group_batches", "num_workers", "shuffle_seed", "packing"}
_FEATURES_VERSION = 3  # bump when the base's feature layout changes, so old caches are not reused


class TaskDataModule(LightningDataModule):
    """Loads, tokenizes (with `datasets.map`, cached) and batches the splits of one task.

    Subclasses set `task_name`, implement `encode` (a batched `datasets.map` function over raw rows that
    returns model features, plus `id` and `ROW` per feature when it changes the number of rows), and optionally
    `build_info` (what the model must know, such as label names) and `collate`.

    Every row of a split carries its index in the split (`lit_ft.rows.ROW`) through features and batches (the
    batch's `ROW` list) into the prediction records, which are joined to their inputs by that position: ids are
    data, and may repeat or be missing.

    Args:
        source: Where the rows come from (hub dataset or local files per split).
        tokenizer: Tokenizer name or path; the CLI links it to `model.backbone`.
        batch_size: Training examples per batch on each device.
        eval_batch_size: Examples per batch for validation, test and predict (default: 2 x batch_size).
        max_length: Longest tokenized input; longer inputs are truncated.
        group_batches: Batches per length-sorted group when shuffling the training set; 1 = random batches.
        shuffle_seed: Seed of the training order (the epoch number is added each epoch).
        id_column: Column holding each row's id; rows without it are numbered from 0 in file order.
        num_workers: DataLoader worker processes.
    """

    task_name: ClassVar[str] = ""
    task_names: ClassVar[tuple[str, ...]] = ()
    """The tasks a data module shared by several reads data for (`model.task` must be one); by default only
    `task_name`, and any task when that is empty too."""

    def __init__(
        self,
        source: DataSource | None = None,
        tokenizer: str = DEFAULT_BACKBONE,
        batch_size: PositiveInt = 32,
        eval_batch_size: PositiveInt | None = None,
        max_length: PositiveInt = 128,
        group_batches: PositiveInt = 50,
        shuffle_seed: NonNegativeInt = 42,
        id_column: str = "id",
        num_workers: NonNegativeInt = 0,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()  # also collects the subclass's arguments; part of the cache fingerprint
        self.source = source or DataSource()
        self.tokenizer_name = tokenizer
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or 2 * batch_size
        self.max_length = max_length
        self.group_batches = group_batches
        self.shuffle_seed = shuffle_seed
        self.id_column = id_column
        self.num_workers = num_workers
        self._info: dict[str, Any] | None = None
        self._features: dict[str, datasets.Dataset] = {}
        self._raw: dict[str, datasets.Dataset | None] = {}  # per instance: `lit_ft tune` makes one per trial
        self._checked_lengths = False
        check_positive({"data.batch_size": batch_size, "data.eval_batch_size": eval_batch_size,
                        "data.max_length": max_length, "data.group_batches": group_batches})
        if num_workers < 0:
            raise UserError(f"data.num_workers must be 0 or more (got {num_workers}); 0 loads batches in the main "
                            "process")

    @classmethod
    def data_tasks(cls) -> tuple[str, ...]:
        """The tasks this module reads data for (`task_names`, else `task_name`); empty: any."""
        return data_tasks(cls)

    # ---- what subclasses implement -------------------------------------------------------------
    def encode(self, rows: dict[str, list[Any]], split: str) -> dict[str, list[Any]]:
        """Batched map function: raw rows (with `id`) of `split` -> features. Check column names here."""
        raise NotImplementedError

    def build_info(self) -> dict[str, Any]:
        """What the model must know about the data (saved with the checkpoint); nothing by default."""
        return {}

    def label_counts(self, split: str) -> dict[str, int]:
        """Examples per label name of a split (the data line a run prints, `lit_ft inspect-data`, `lit_ft check`).

        By default the features' `labels` when each example has one whole-number label, named by
        `info["label_names"]` where the info has them; none for other labels. Tasks whose labels can be read from
        the raw rows do so, so labels the model does not know are counted rather than failing the encoding."""
        ds = self.features(split)
        if ds is None or "labels" not in ds.column_names:
            return {}
        labels = ds["labels"]
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
            return {}
        names = self.info.get("label_names") or []
        counts = collections.Counter(labels)
        return {names[v] if 0 <= v < len(names) else str(v): n for v, n in sorted(counts.items())}

    def example_keys(self, rows: dict[str, list[Any]]) -> list[str]:
        """What makes raw rows the same input, for duplicate and train/eval overlap counts (`lit_ft inspect-data`,
        `fit`'s warning; `lit_ft.overlap` ignores case and spacing).

        Batched like `encode`. By default the whole row but its `id` (and private `_` columns); tasks narrow it to
        the input columns, so the same text with another label still counts as seen."""
        columns = sorted(c for c in rows if c != "id" and not c.startswith("_"))
        return [json.dumps([rows[c][i] for c in columns], default=str) for i in range(len(rows["id"]))]

    def example_labels(self, rows: dict[str, list[Any]]) -> list[str] | None:
        """Each raw row's label as text, batched like `example_keys`: `lit_ft inspect-data` reports inputs that
        appear with different labels. None (no single label per row) by default."""
        return None

    def split_notes(self, split: str) -> list[str]:
        """Notes on a loaded split that the run's data line (`lit_ft.data_summary`) adds after its row count, such
        as rows the encoding dropped and why (never silently); none by default."""
        return []

    def cut_inputs(self, split: str) -> int:
        """Inputs of a loaded split that lost tokens to the length limits (`lit_ft inspect-data`): the encoding's
        own `truncated` column where it keeps one, else those that reach `max_length`."""
        ds = self.features(split)
        if ds is None:
            return 0
        if "truncated" in ds.column_names:
            return int(sum(ds["truncated"]))
        return inputs_at_limit(ds, self.max_length)

    def show_example(self, feature: dict[str, Any]) -> list[str]:
        """Lines showing one encoded example as the model sees it (`lit_ft inspect-data`).

        By default: the decoded input; tokens with a loss (labels != -100) in `[[...]]` when the labels follow
        the input token by token (causal LM), or each labelled token's label name (tagging); else the label or
        the decoded target. Several sequences per example (multiple choice) are shown one per line."""
        from lit_ft.example_view import default_view

        return default_view(feature, self.tokenizer, self.info.get("label_names"))

    def prediction_inputs(self, split: str) -> list[dict[str, Any]]:
        """Per row of the split, in order (`raw(split)[i]` for row i), the input fields that prediction records
        carry (the text, and the gold labels when the split has them), so errors read without a join;
        `lit_ft predict` and `lit_ft test` add them to the row's record next to its `id`. Keys a task's records
        already hold keep the task's value.

        By default, from the data module's conventional column settings, those it has and the split holds:
        `text_column` -> `text`, `text_pair_column` -> `text_pair`, `label_column` -> `gold_label` (as the raw rows
        hold them; texts as `texts` reads them). None for a data module without such settings."""
        raw = self.raw(split)
        if raw is None:
            return []
        fields = {}
        for setting, key in DEFAULT_INPUT_FIELDS.items():
            column = getattr(self, setting, None)
            if isinstance(column, str) and column in raw.column_names:
                values = raw[column]
                fields[key] = values if key == "gold_label" else [v if v is None else str(v) for v in values]
        return [{k: v[i] for k, v in fields.items()} for i in range(len(raw))] if fields else []

    def collate(self, rows: list[dict[str, Any]]) -> Batch:
        ids = [row.pop("id") for row in rows]
        for row in rows:
            row.pop("length", None)
            row.pop(ROW, None)  # loaders move it to the batch first (`row_collate`); a direct call drops it
        return {"inputs": dict(self.padder(rows)), "id": ids}

    # ---- shared machinery ----------------------------------------------------------------------
    @functools.cached_property
    def tokenizer(self) -> PreTrainedTokenizerBase:
        return pad_with_eos(load_tokenizer(self.tokenizer_name))

    @functools.cached_property
    def padder(self) -> DataCollatorWithPadding:
        return DataCollatorWithPadding(self.tokenizer)

    @property
    def info(self) -> dict[str, Any]:
        if self._info is None:
            self._info = self.build_info()
        return self._info

    def use_info(self, info: dict[str, Any]) -> None:
        """Adopt the model's info (from a checkpoint), so predict needs no training data."""
        self._info = dict(info)

    def raw(self, split: str) -> datasets.Dataset | None:
        """The raw rows of a split, with an `id` column and their index in the split (`ROW`); validation is carved
        from train when not given. Loaded once per split for the data module's life."""
        if split not in self._raw:
            ds = self._split_rows(split)
            self._raw[split] = None if ds is None else number_split(ds)
        return self._raw[split]

    def _split_rows(self, split: str) -> datasets.Dataset | None:
        carve = self.source.validation is None and self.source.train is not None
        if carve and split in ("train", "validation"):
            train = self._numbered("train")  # ids count rows of the file, before the held-out split
            assert train is not None
            try:
                parts = train.train_test_split(test_size=self.source.validation_fraction, seed=self.source.seed)
            except ValueError as err:  # a split would be empty
                raise UserError(
                    f"{self.source.describe('train')} has {len(train)} rows, too few to hold out "
                    f"data.source.validation_fraction={self.source.validation_fraction} of them for validation; "
                    "set data.source.validation to a file or add rows"
                ) from err
            return parts["train" if split == "train" else "test"]
        return self._numbered(split)

    def _numbered(self, split: str) -> datasets.Dataset | None:
        ds = self.load_split(split)
        return None if ds is None else self._with_ids(self._text_lines(ds, split))

    def _text_lines(self, ds: datasets.Dataset, split: str) -> datasets.Dataset:
        """Rows of a plain text file arrive in a `text` column: rename it to the task's `line_column`."""
        where = self.source.location(split)
        as_text = not self.source.hub and where is not None and self.source.file_format(where) == "text"
        if not as_text or ds.column_names != [TEXT_COLUMN]:
            return ds  # not read as plain text (a task's own reader, such as CoNLL for .txt, took it)
        column = self.line_column_name()
        if column is None:
            raise UserError(
                f"{self.source.describe(split)} is read as plain text (one example per line), which task "
                f"'{self.task_name}' cannot use; give csv/json/jsonl/parquet rows or fix data.source.format"
            )
        return ds if column == TEXT_COLUMN else ds.rename_column(TEXT_COLUMN, column)

    def line_column_name(self) -> str | None:
        """The column a plain text file's lines become; None when the task reads no plain text files."""
        return None

    def load_split(self, split: str) -> datasets.Dataset | None:
        """The rows of one configured split as `data.source` gives them; a task may read other layouts here."""
        return self.source.load(split)

    def _with_ids(self, ds: datasets.Dataset) -> datasets.Dataset:
        if self.id_column in ds.column_names:
            if self.id_column != "id":
                ds = ds.rename_column(self.id_column, "id")
            return ds.cast_column("id", datasets.Value("string"))
        return ds.map(lambda _, i: {"id": str(i)}, with_indices=True, desc="numbering rows")

    def features(self, split: str) -> datasets.Dataset | None:
        """Tokenized features of a split; `datasets` caches them, keyed by data, tokenizer and settings."""
        if split not in self._features:
            raw = self.raw(split)
            if raw is None:
                return None
            self._features[split] = raw.map(
                functools.partial(self._encode_rows, split=split),
                batched=True,
                remove_columns=raw.column_names,
                new_fingerprint=self._fingerprint(raw, split),
                desc=f"tokenizing {split}",
            )
        return self._features[split]

    def _encode_rows(self, rows: dict[str, list[Any]], split: str) -> dict[str, list[Any]]:
        out = self.encode(rows, split)
        if "id" not in out:
            out["id"] = rows["id"]
        if ROW not in out:
            if len(out["id"]) != len(rows["id"]):
                raise InternalError(f"{type(self).__name__}.encode made {len(out['id'])} features of {len(rows['id'])} "
                                    f"rows but no `{ROW}` column: a task that changes the number of rows returns "
                                    "each feature's row (lit_ft.rows.ROW) next to its id")
            out[ROW] = rows[ROW]
        if "length" not in out:
            out["length"] = [len(ids) for ids in out["input_ids"]]
        return out

    def _fingerprint(self, raw: datasets.Dataset, split: str) -> str:
        settings = {k: v for k, v in self.hparams.items() if k not in _BATCHING_ARGS}
        tok = self.tokenizer
        # the whole tokenizer definition, not just its name: a retrained vocabulary must not reuse old features
        vocab = tok.backend_tokenizer.to_str() if tok.is_fast else sorted(tok.get_vocab().items())
        tokenizer_id = (type(tok).__name__, tok.name_or_path, len(tok), vocab)
        return Hasher.hash((type(self).__qualname__, dataset_fingerprint(raw), split, settings, self.info, tokenizer_id,
                            _FEATURES_VERSION))

    def _adopt_model_info(self) -> None:
        """A model restored from a checkpoint already knows the labels: use them, so no training data is needed."""
        model = self.trainer.lightning_module if self.trainer is not None else None
        info = getattr(getattr(model, "hparams", None), "info", None)
        if info is not None:
            self.use_info(info)

    def length_settings(self) -> dict[str, int]:
        """Token lengths that must fit the backbone's position table, by setting name."""
        return {"data.max_length": self.max_length}

    def length_problems(self) -> list[str]:
        """Each length setting that exceeds the backbone's position table, as a message with its fix."""
        limit = position_limit(self.tokenizer_name)
        return [f"{setting} is {value}, but backbone '{self.tokenizer_name}' has {limit} positions; "
                f"set {setting} to {limit} or less"
                for setting, value in self.length_settings().items() if limit is not None and value > limit]

    def check_lengths(self) -> None:
        """Fail before any data is read when a length setting exceeds the backbone's positions (once)."""
        if self._checked_lengths:
            return
        self._checked_lengths = True
        problems = self.length_problems()
        if problems:
            raise UserError(problems[0])

    def prepare_data(self) -> None:
        self.check_lengths()
        self._adopt_model_info()
        # runs on one process first, so the other ranks find the tokenized cache
        for split in self._stage_splits():
            self.features(split)

    def _stage_splits(self) -> tuple[str, ...]:
        """The splits the trainer's command reads: `test`, `validate` and `predict` only their own (a model from a
        checkpoint needs no training data); `fit`, or no trainer, every configured split, so a bad test or
        predict file fails before hours of training and the data line shows them all."""
        fn = getattr(getattr(self.trainer, "state", None), "fn", None) if self.trainer is not None else None
        stage = str(getattr(fn, "value", fn))
        return ALL_SPLITS if stage == "fit" else STAGE_SPLITS.get(stage, ALL_SPLITS)

    def setup(self, stage: str) -> None:
        self.check_lengths()
        self._adopt_model_info()
        stage = str(getattr(stage, "value", stage))  # Lightning passes a str enum
        for split in STAGE_SPLITS.get(stage, ()):
            if self.features(split) is None and split != "validation":
                raise UserError(
                    f"`{stage}` needs a {split} split, but data.source.{split} is not set; give a file or a split name"
                )

    def split_place(self, split: str) -> str:
        """`the validation split (file 'val.jsonl')`, or `... (held out of file 'train.jsonl')`: how a row error
        names the split and where its rows come from."""
        carved = split == "validation" and self.source.location(split) is None
        where = f"held out of {self.source.describe('train')}" if carved else self.source.describe(split)
        return f"the {split} split ({where})"

    def require_columns(self, rows: dict[str, list[Any]], split: str, columns: dict[str, str | None]) -> None:
        """Fail with the setting to change when a configured column is missing from a split."""
        for setting, column in columns.items():
            if column is not None and column not in rows:
                found = sorted(k for k in rows if k != "id" and k != ROW)
                raise UserError(
                    f"{setting} '{column}' not found in {self.source.describe(split)}; columns are {found}: "
                    f"set data.{setting}"
                )

    def texts(self, rows: dict[str, list[Any]], split: str, setting: str, column: str) -> list[str]:
        """The values of a text column as strings; an empty or missing text fails naming the row."""
        values = rows[column]
        for value, row_id, row in zip(values, rows["id"], rows[ROW], strict=True):
            if value is None or (isinstance(value, str) and not value.strip()):
                raise UserError(f"{row_name(row_id, row)} of {self.source.describe(split)} has an empty {setting} "
                                f"'{column}'; fill it or drop the row")
        return [v if isinstance(v, str) else str(v) for v in values]

    def _require(self, split: str) -> datasets.Dataset:
        ds = self.features(split)
        if ds is None:
            raise UserError(f"data.source.{split} is not set; give a file or a split name")
        return ds

    def _rank_world(self) -> tuple[int, int]:
        trainer = self.trainer
        return (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)

    def _loader(self, ds: datasets.Dataset, sampler: Sampler[list[int]]) -> DataLoader:
        # a private generator: creating an iterator does not draw from the global RNG (exact resume);
        # EvalRows + flagged_collate mark the sampler's padding batches (counted in no metric or record)
        collate = functools.partial(flagged_collate, self.collate)
        return DataLoader(EvalRows(ds), batch_sampler=sampler, collate_fn=collate, num_workers=self.num_workers,
                          generator=torch.Generator().manual_seed(0))

    def _batches_done(self) -> int:
        """Training batches finished in the current epoch (saved with checkpoints as the sampler's position)."""
        trainer = self.trainer
        return 0 if trainer is None else trainer.fit_loop.epoch_loop.batch_progress.current.completed

    def train_dataloader(self) -> DataLoader:
        ds = self._require("train")
        rank, world = self._rank_world()
        sampler = self.train_sampler(ds["length"], rank, world)
        collate = functools.partial(row_collate, self.train_collate)
        return ResumableLoader(ds, batch_sampler=sampler, collate_fn=collate, num_workers=self.num_workers,  # type: ignore[arg-type]
                               batches_done=self._batches_done)

    def train_sampler(self, lengths: list[int], rank: int, world: int) -> LengthGroupedBatchSampler:
        """The training batches of this rank (a task that packs examples returns its own)."""
        return LengthGroupedBatchSampler(lengths, self.batch_size, seed=self.shuffle_seed,
                                         group_batches=self.group_batches, rank=rank, world_size=world)

    def epoch_batches(self, world_size: int = 1) -> int | None:
        """Training batches per epoch on each of `world_size` processes, counted by the training sampler itself
        (a task that packs examples makes fewer batches than rows / batch_size); None without a training split."""
        ds = self.features("train")
        return None if ds is None else len(self.train_sampler(ds["length"], 0, world_size))

    def train_collate(self, rows: list[dict[str, Any]]) -> Batch:
        """Training examples -> a batch; `collate` unless the task feeds training batches differently."""
        return self.collate(rows)

    def _eval_loader(self, split: str) -> DataLoader:
        ds = self._require(split)
        rank, world = self._rank_world()
        return self._loader(ds, ShardedEvalBatchSampler(ds["length"], self.eval_batch_size, rank, world))

    def val_dataloader(self) -> DataLoader | list[Any]:
        return [] if self.features("validation") is None else self._eval_loader("validation")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("predict")


def check_positive(settings: dict[str, int | None]) -> None:
    """Every given setting is a positive integer, or the error names it."""
    for setting, value in settings.items():
        if value is not None and value < 1:
            raise UserError(f"{setting} must be a positive integer (got {value}); set {setting} to 1 or more")


def data_tasks(data_class: Any) -> tuple[str, ...]:
    """The tasks a data module class reads data for: its `task_names`, else its `task_name`; empty: any task."""
    names = tuple(getattr(data_class, "task_names", ()) or ())
    name = getattr(data_class, "task_name", "")
    return names or ((name,) if name else ())
