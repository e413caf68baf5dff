"""Several data sources in one run (`data.sources`): each read and encoded by its own copy of the data module, with
its own files and settings, its training rows weighted or capped with a seed, and the splits concatenated.

Anchors: Axolotl's `datasets:` list (a path and a row format per entry) and LLaMA-Factory's mixing
(`interleave_probs`, `max_samples`). Here a source's `weight` multiplies its training rows (0.5 takes half of them,
2.0 every row twice; a fraction is sampled with `data.mix_seed`) and `max_rows` caps them. Validation, test and
predict rows of every source are all kept (unweighted), so evaluation reads each source's own held-out rows.

The mixed splits keep the invariants of one source: each split's rows are numbered 0..n-1 (`lit_ft.rows.ROW`), in
source order; ids are prefixed with the source's name (`chat/7`), so they say where a row came from; the raw rows
and the features hold the same rows, so predictions join back to their inputs by position.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any

import datasets

# NonNegativeInt, OpenUnitInterval, FileFormat: annotations of the fields MixSource inherits from DataSource, which
# `typing.get_type_hints` of the dataclass's `__init__` resolves in this module
from lit_ft.domains import NonNegativeInt, OpenUnitInterval, PositiveFloat, PositiveInt  # noqa: F401
from lit_ft.errors import UserError
from lit_ft.rows import ROW
from lit_ft.source import SPLITS, DataSource, FileFormat  # noqa: F401

if TYPE_CHECKING:
    from lit_ft.datamodule import TaskDataModule

SOURCE_COLUMN = "_source"  # which source a mixed raw row came from; private (`_`), so never part of an input key
# data module settings a source cannot change: they are the run's, shared by every source
SHARED_SETTINGS = frozenset({"source", "sources", "mix_seed", "tokenizer", "batch_size", "eval_batch_size",
                             "group_batches", "shuffle_seed", "num_workers", "packing"})
# per-row and per-split questions a mixed data module answers with each source's own data module (see `Mix.bind`)
ROW_QUESTIONS = ("example_keys", "example_labels")
SPLIT_QUESTIONS = ("prediction_inputs", "label_counts")


@dataclass
class MixSource(DataSource):
    """One source of a mixed run (an entry of `data.sources`): where its rows come from (every `data.source`
    field), how many of its training rows to take, and the data module settings that differ for it.

    Args:
        name: The source's name: the data line and `lit_ft inspect-data` show it, and its rows' ids are prefixed
            with it (`alpaca/3`).
        weight: Multiplies the source's training rows: 0.5 takes half of them (sampled with `data.mix_seed`), 2.0
            every row twice, 1.5 every row once and half of them again.
        max_rows: At most this many training rows from the source (sampled with `data.mix_seed`), after `weight`.
        settings: The data module's settings that differ for this source, such as `{format: chat}` or
            `{instruction_column: question}`; any constructor argument of the data module but the shared ones
            (tokenizer, batching, `source`).
    """

    name: str = ""
    weight: PositiveFloat | None = None
    max_rows: PositiveInt | None = None
    settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.name or "/" in self.name:
            raise UserError(f"data.sources: a source has name {self.name!r}; give each source a name without '/' "
                            "(for example `name: alpaca`)")
        if self.weight is not None and not self.weight > 0:
            raise UserError(f"data.sources ({self.name}): weight must be a number above 0 (got {self.weight})")
        if self.max_rows is not None and self.max_rows < 1:
            raise UserError(f"data.sources ({self.name}): max_rows must be 1 or more (got {self.max_rows})")

    def data_source(self) -> DataSource:
        """The source's files as a plain `DataSource` (what its own data module reads)."""
        names = {f.name for f in fields(DataSource)}
        return DataSource(**{k: v for k, v in asdict(self).items() if k in names})

    def rule(self) -> str:
        """`weight 0.5`, `max_rows 200`, both, or `all`: how the training rows were taken."""
        parts = [f"weight {self.weight:g}" if self.weight is not None else "",
                 f"max_rows {self.max_rows}" if self.max_rows is not None else ""]
        return ", ".join(p for p in parts if p) or "all"


def sample_rows(n: int, weight: float | None, max_rows: int | None, rng: random.Random) -> list[int]:
    """Indices of the training rows to take of `n`: every row `int(weight)` times, then a sample of the fraction
    (without repeats), then at most `max_rows` of those (sampled); in file order, repeats together."""
    w = 1.0 if weight is None else weight
    whole = int(w)
    taken = list(range(n)) * whole + sorted(rng.sample(range(n), round((w - whole) * n)))
    if max_rows is not None and len(taken) > max_rows:
        taken = [taken[i] for i in sorted(rng.sample(range(len(taken)), max_rows))]
    return taken


def own_settings(owner: TaskDataModule) -> dict[str, Any]:
    """The data module's constructor arguments (its `hparams`, less the CLI's private `_class_path` notes)."""
    return {k: v for k, v in owner.hparams.items() if not k.startswith("_")}


def check_entries(owner: TaskDataModule, entries: list[MixSource]) -> None:
    """Names are unique and each source's settings are the data module's own (and not the shared ones)."""
    known = set(own_settings(owner)) - SHARED_SETTINGS
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        if entry.name in seen:
            raise UserError(f"data.sources[{i}]: the name '{entry.name}' is used twice; give each source its own name")
        seen.add(entry.name)
        for key in entry.settings:
            if key in SHARED_SETTINGS:
                raise UserError(f"data.sources[{i}] ({entry.name}): settings.{key} is shared by every source; set "
                                f"data.{key} instead")
            if key not in known:
                close = difflib.get_close_matches(key, known, n=1)
                hint = f"did you mean '{close[0]}'? " if close else ""
                raise UserError(f"data.sources[{i}] ({entry.name}): settings.{key} is not a setting of "
                                f"{type(owner).__name__}; {hint}its settings are {sorted(known)}")


class Mix:
    """The sources of one data module: a copy of it per source (its class, its settings, the source's files and
    overrides), and the mixed splits made of theirs."""

    def __init__(self, owner: TaskDataModule, entries: list[MixSource], seed: int) -> None:
        check_entries(owner, entries)
        self.owner = owner
        self.entries = entries
        self.seed = seed
        self.available: dict[str, int] = {}  # training rows of each source before weighting
        self._parts: dict[str, list[int]] = {}  # split -> the entries that have it, in source order
        self._columns: dict[str, set[str]] = {e.name: set() for e in entries}  # each source's own raw columns
        shared = {k: v for k, v in own_settings(owner).items() if k not in ("source", "sources", "mix_seed")}
        self.modules = {e.name: type(owner)(**{**shared, **e.settings, "source": e.data_source()}) for e in entries}

    def bind(self) -> None:
        """Answer the per-row questions with each source's own module: instance attributes shadow the class's
        methods, a task's overrides included, so no task has to know about mixing."""
        for name in ROW_QUESTIONS:  # a partial of a method, not a closure: the data module stays picklable
            setattr(self.owner, name, functools.partial(self.by_source, name))
        for name in SPLIT_QUESTIONS:
            setattr(self.owner, name, getattr(self, name))

    def raw(self, split: str) -> datasets.Dataset | None:
        """Every source's rows of the split (training rows sampled), ids prefixed, with their source's name."""
        parts, have = [], []
        for i, entry in enumerate(self.entries):
            ds = self._source_rows(i, entry, self.modules[entry.name], split)
            if ds is not None:
                parts.append(ds.add_column(SOURCE_COLUMN, [entry.name] * len(ds)))  # type: ignore[arg-type]
                have.append(i)
        self._parts[split] = have
        return concat_union([p.remove_columns(ROW) for p in parts]) if parts else None

    def _source_rows(self, i: int, entry: MixSource, module: TaskDataModule, split: str) -> datasets.Dataset | None:
        with named_source(i, entry.name):
            ds = module.raw(split)
        if ds is None:
            return None
        if split == "train":
            self.available[entry.name] = len(ds)
            rng = random.Random(f"{self.seed}/{entry.name}")
            ds = ds.select(sample_rows(len(ds), entry.weight, entry.max_rows, rng))
        ds = ds.map(lambda rows: {"id": [f"{entry.name}/{v}" for v in rows["id"]]}, batched=True,
                    desc=f"naming {entry.name} rows")
        self._columns[entry.name].update(ds.column_names)
        return module.use_rows(split, ds)  # the module encodes exactly the rows the mix holds

    def features(self, split: str) -> datasets.Dataset | None:
        """Each source's features of the split, encoded with its own settings; rows renumbered after the sources
        before them, as in `raw`."""
        self.owner.raw(split)
        parts, offsets, offset = [], [], 0
        for i in self._parts.get(split, []):
            module = self.modules[self.entries[i].name]
            module.use_info(self.owner.info)  # one label set for the run, not one per source
            with named_source(i, self.entries[i].name):
                ds = module.features(split)
            raw = module.raw(split)
            assert ds is not None and raw is not None
            parts.append(ds)
            offsets += [offset + r for r in ds[ROW]]
            offset += len(raw)
        if not parts:
            return None
        return concat_union([p.remove_columns(ROW) for p in parts]).add_column(ROW, offsets)  # type: ignore[arg-type]

    def by_source(self, question: str, rows: dict[str, list[Any]]) -> list[Any] | None:
        """A batched per-row question (`example_keys`, `example_labels`) of mixed raw rows, each row answered by its
        source's module from the source's own columns; None when a source has no answer."""
        sources = rows[SOURCE_COLUMN]
        found: list[Any] = [None] * len(sources)
        for name, module in self.modules.items():
            at = [i for i, s in enumerate(sources) if s == name]
            if not at:
                continue
            columns = [c for c in rows if c in self._columns[name] or c == ROW]
            got = getattr(module, question)({c: [rows[c][i] for i in at] for c in columns})
            if got is None:
                return None
            for i, value in zip(at, got, strict=True):
                found[i] = value
        return found

    def prediction_inputs(self, split: str) -> list[dict[str, Any]]:
        """Each source's own prediction inputs, in row order (empty when no source gives any)."""
        self.owner.raw(split)
        inputs = [(m.prediction_inputs(split), len(m.raw(split) or ())) for m in self._having(split)]
        if not any(found for found, _ in inputs):
            return []
        return [row for found, n in inputs for row in (found or [{}] * n)]

    def label_counts(self, split: str) -> dict[str, int]:
        """The sources' label counts, summed."""
        self.owner.features(split)
        total: dict[str, int] = {}
        for module in self._having(split):
            for label, n in module.label_counts(split).items():
                total[label] = total.get(label, 0) + n
        return dict(sorted(total.items()))

    def rows(self) -> dict[str, dict[str, int]]:
        """Rows of each loaded split per source: `{name: {"train": 300, ...}}`."""
        table: dict[str, dict[str, int]] = {e.name: {} for e in self.entries}
        for split in SPLITS:
            for i in self._parts.get(split, []):
                name = self.entries[i].name
                table[name][split] = len(self.modules[name].raw(split) or ())
        return table

    def _having(self, split: str) -> list[TaskDataModule]:
        """The modules of the sources that have a loaded split, in source order."""
        return [self.modules[self.entries[i].name] for i in self._parts.get(split, [])]

    def summary(self) -> str | None:
        """`mix: alpaca 300 (weight 0.5 of 600), chat 200 (max_rows 200 of 1000)`: training rows taken per source."""
        if "train" not in self._parts:
            return None
        rows = self.rows()
        parts = [f"{e.name} {rows[e.name].get('train', 0):,} ({e.rule()} of {self.available.get(e.name, 0):,})"
                 for e in self.entries if e.name in self.available]
        return f"mix (data.mix_seed {self.seed}): " + ", ".join(parts)

    def table(self) -> list[str]:
        """Rows per source and split, with how the training rows were taken (`lit_ft inspect-data`)."""
        rows = self.rows()
        width = max(len(e.name) for e in self.entries)
        lines = [f"sources (training rows sampled with data.mix_seed {self.seed}):"]
        for e in self.entries:
            got = rows[e.name]
            train = (f"train {got['train']:,} ({e.rule()} of {self.available[e.name]:,})" if "train" in got
                     else "train -")
            others = ", ".join(f"{s} {got[s]:,}" for s in SPLITS[1:] if s in got)
            lines.append(f"  {e.name:<{width}}  {train}" + (f", {others}" if others else ""))
        return lines


@contextlib.contextmanager
def named_source(index: int, name: str) -> Iterator[None]:
    """A source's own errors, prefixed with its name; the `data.source.X` they name becomes the entry's key."""
    try:
        yield
    except UserError as err:
        raise UserError(f"source '{name}': " + str(err).replace("data.source.", f"data.sources[{index}].")) from None


def concat_union(parts: list[datasets.Dataset]) -> datasets.Dataset:
    """The datasets one after another; a column some lack is empty (None) in their rows (sources of different row
    formats have different columns)."""
    common: dict[str, Any] = {}
    for ds in parts:
        for name, feature in ds.features.items():
            common.setdefault(name, feature)
    filled = []
    for ds in parts:
        for name, feature in common.items():
            if name not in ds.column_names:
                ds = ds.add_column(name, [None] * len(ds), feature=feature)  # type: ignore[arg-type]
        filled.append(ds.select_columns(list(common)))
    try:
        return datasets.concatenate_datasets(filled)
    except ValueError as err:
        raise UserError(f"data.sources: the sources' columns do not fit together ({' '.join(str(err).split())[:300]})"
                        "; give the same column the same kind of values in every source, or rename it in one source's "
                        "files") from None
