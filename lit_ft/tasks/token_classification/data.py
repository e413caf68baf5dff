"""Sentences as token lists with one tag per token: CoNLL files, JSON/JSONL lists, or hub token/tag columns."""

from __future__ import annotations

import collections
import functools
from typing import Any, Literal

import datasets
import torch
from lightning.pytorch.utilities import rank_zero_info
from transformers import DataCollatorForTokenClassification

from lit_ft.datamodule import TaskDataModule
from lit_ft.errors import UserError
from lit_ft.example_view import decode, field
from lit_ft.label_sanity import check_discovered_labels
from lit_ft.rows import ROW, row_name
from lit_ft.task import Batch
from lit_ft.tasks.token_classification.conll import ConllSource
from lit_ft.tasks.token_classification.metrics import IGNORE
from lit_ft.tasks.token_classification.schemes import (
    Scheme,
    continuation,
    convert,
    invalid_tag,
    label_set,
    normalize_scheme,
    split_tag,
)

# per-row keys the collate moves out of the model inputs
_EXTRA = ("id", "tokens", "truncated", "word_ids", "word_labels", "length", ROW)


class TokenClassificationData(TaskDataModule):
    """Tagged sentences for NER, POS tagging or chunking.

    Args:
        token_column: Column with each sentence's tokens (a list of words).
        tag_column: Column with each sentence's tags: a list of names, or of ids into the hub dataset's
            ClassLabel names (or into `label_names` when there are none).
        tag_scheme: Scheme of the input tags: `IOB1`, `IOB2` (= `BIO`), `BIOES`, or `none` for plain tags
            (POS tags) that are not entity spans.
        target_scheme: Scheme the model is trained on; default `IOB2` for entity tags, `none` for plain tags.
        label_names: The model's labels in order (in the target scheme); discovered from the training split
            when not given: `O`, then every type (sorted) with each prefix of the scheme.
        label_all_subtokens: Label every sub-token of a word (`B-X` continues as `I-X`) instead of the first only.
        data_format: `conll` reads every local file as CoNLL; `auto` reads .conll/.txt/.iob/.bio files and
            files whose suffix is no known format (`eng.testa`) as CoNLL, and json/jsonl/csv/parquet as usual.
        conll_token_index: Column of the token in a CoNLL line.
        conll_tag_index: Column of the tag in a CoNLL line; negative counts from the end (-1: last column,
            the NER tag of CoNLL-2003; 1 and 2 are its POS and chunk tags).
        **kwargs: Source, tokenizer and batching settings of `TaskDataModule`.
    """

    task_name = "token_classification"

    def __init__(
        self,
        token_column: str = "tokens",
        tag_column: str = "tags",
        tag_scheme: Scheme = "IOB2",
        target_scheme: Scheme | None = None,
        label_names: list[str] | None = None,
        label_all_subtokens: bool = False,
        data_format: Literal["auto", "conll"] = "auto",
        conll_token_index: int = 0,
        conll_tag_index: int = -1,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.token_column = token_column
        self.tag_column = tag_column
        self.tag_scheme = normalize_scheme(tag_scheme)
        self.target_scheme = normalize_scheme(target_scheme or ("none" if self.tag_scheme == "none" else "IOB2"))
        if self.tag_scheme == "none" and self.target_scheme != "none":
            raise UserError("data.tag_scheme is 'none' (plain tags), so there are no entities to convert to "
                             f"'{self.target_scheme}'; set data.target_scheme to none or name the input's scheme")
        self.label_names = label_names
        self.label_all_subtokens = label_all_subtokens
        self.source = ConllSource.wrap(self.source, data_format=data_format, token_column=token_column,
                                       tag_column=tag_column, token_index=conll_token_index,
                                       tag_index=conll_tag_index)
        self._reported: set[str] = set()

    # ---- labels --------------------------------------------------------------------------------
    def build_info(self) -> dict[str, Any]:
        names = list(self.label_names) if self.label_names else self._discover_labels()
        if self.target_scheme != "none" and "O" not in names:
            raise UserError(f"label names {names} have no 'O' tag, which scheme '{self.target_scheme}' needs; "
                             "add 'O' to data.label_names")
        return {"label_names": names, "tag_scheme": self.target_scheme}

    def _discover_labels(self) -> list[str]:
        train = self.raw("train")
        if train is None:
            raise UserError("label names are unknown: there is no training split to discover them from; "
                             "set data.label_names or run with --ckpt_path of a trained model")
        self.require_columns({c: [] for c in train.column_names}, "train", {"tag_column": self.tag_column})
        class_names = self._class_names("train")
        if class_names is not None and self.tag_scheme == self.target_scheme:
            return class_names  # the hub's own label order
        tags = class_names or sorted({t for row in self._tag_names(train[self.tag_column], "train") for t in row})
        if class_names is None:
            check_discovered_labels(tags, f"{self.source.describe('train')} (column '{self.tag_column}')",
                                    "spell each tag one way in the rows, or list the tags in data.label_names")
        if self.target_scheme == "none":
            return tags
        self._check_scheme(tags, "train", "(training split)")
        return label_set((split_tag(t)[1] for t in tags if t != "O"), self.target_scheme)

    def _class_names(self, split: str) -> list[str] | None:
        """The ClassLabel names of the tag column (hub datasets, parquet), if it has them."""
        raw = self.raw(split)
        feature = None if raw is None else raw.features.get(self.tag_column)
        names = getattr(getattr(feature, "feature", None), "names", None)
        return list(names) if names else None

    def _tag_names(self, rows: list[list[Any]], split: str) -> list[list[str]]:
        if not any(isinstance(t, int) for row in rows for t in row):
            return [[str(t) for t in row] for row in rows]
        names = self._class_names(split) or (list(self.label_names) if self.label_names else None)
        if names is None:
            raise UserError(f"the tags of {self.source.describe(split)} (column '{self.tag_column}') are ids, and "
                             "the data has no ClassLabel names for them; set data.label_names")
        return [[names[t] for t in row] for row in rows]

    def _check_scheme(self, tags: list[str], split: str, row_id: str) -> None:
        if self.tag_scheme == "none":
            return
        bad = invalid_tag(tags, self.tag_scheme)
        if bad is not None:
            raise UserError(
                f"tag '{bad}' of row {row_id} in {self.source.describe(split)} (column '{self.tag_column}') is not a "
                f"{self.tag_scheme} tag; set data.tag_scheme (`none` for plain tags such as POS) or fix the row"
            )

    def _label_ids(self, tags: list[str], row: str, split: str, index: dict[str, int]) -> list[int]:
        """Label ids of a row's tags; `row` names it in errors (`row_name`)."""
        self._check_scheme(tags, split, row.removeprefix("row "))
        if self.target_scheme != "none":
            tags = convert(tags, self.target_scheme)
        unknown = sorted({t for t in tags if t not in index})
        if unknown:
            raise UserError(f"tags {unknown} of {row} in {self.source.describe(split)} are not among the "
                             f"label names {list(index)}; add them to data.label_names or fix the row")
        return [index[t] for t in tags]

    def label_counts(self, split: str) -> dict[str, int]:
        """Words per tag (in the target scheme), read from the raw rows."""
        raw = self.raw(split)
        if raw is None or self.tag_column not in raw.column_names:
            return {}
        counts: collections.Counter[str] = collections.Counter()
        for tags in self._tag_names(raw[self.tag_column], split):
            counts.update(convert(tags, self.target_scheme) if self.target_scheme != "none" else tags)
        order = {n: i for i, n in enumerate(self.info["label_names"])}
        return dict(sorted(counts.items(), key=lambda kv: (order.get(kv[0], len(order)), kv[0])))

    def prediction_inputs(self, split: str) -> list[dict[str, Any]]:
        """Per row, `gold_tags` (in the model's scheme) when the split has tags; the records hold the tokens."""
        raw = self.raw(split)
        if raw is None or self.tag_column not in raw.column_names:
            return []
        rows = self._tag_names(raw[self.tag_column], split)
        if self.target_scheme != "none":
            rows = [convert(tags, self.target_scheme) for tags in rows]
        return [{"gold_tags": tags} for tags in rows]

    # ---- inspection ----------------------------------------------------------------------------
    def example_keys(self, rows: dict[str, list[Any]]) -> list[str]:
        if self.token_column not in rows:
            return super().example_keys(rows)
        return [" ".join(str(w) for w in words) for words in rows[self.token_column]]

    def show_example(self, feature: dict[str, Any]) -> list[str]:
        """Each word with its tag (`EU/B-ORG rejects/O`); words cut off by max_length are listed apart."""
        words, names = feature["tokens"], self.info["label_names"]
        tags = feature.get("word_labels") or [None] * len(words)
        seen = max(feature["word_ids"], default=-1) + 1
        shown = [w if t is None else f"{w}/{names[t]}" for w, t in zip(words[:seen], tags, strict=False)]
        lines = field("words/tags", " ".join(shown))
        if seen < len(words):
            lines += field(f"cut off by max_length ({len(words) - seen} words)", " ".join(words[seen:]))
        return [*lines, *field("sub-tokens", decode(self.tokenizer, feature["input_ids"]))]

    # ---- features ------------------------------------------------------------------------------
    def encode(self, rows: dict[str, list[Any]], split: str) -> dict[str, list[Any]]:
        self.require_columns(rows, split, {"token_column": self.token_column})
        if self.tag_column not in rows and split != "predict":
            self.require_columns(rows, split, {"tag_column": self.tag_column})
        if not self.tokenizer.is_fast:
            raise UserError(f"token classification needs a fast tokenizer (word_ids); '{self.tokenizer_name}' "
                             "has a slow one: pick a backbone that ships tokenizer.json")
        sentences = [[str(w) for w in words] for words in rows[self.token_column]]
        enc = self.tokenizer(sentences, is_split_into_words=True, truncation=True, max_length=self.max_length)
        out: dict[str, list[Any]] = {**enc, "tokens": sentences, "word_ids": [], "truncated": []}
        for i, words in enumerate(sentences):
            ids = [-1 if w is None else w for w in enc.word_ids(i)]
            out["word_ids"].append(ids)
            out["truncated"].append(max(ids, default=-1) < len(words) - 1)
        if self.tag_column in rows:
            out["word_labels"], out["labels"] = self._labels(rows, sentences, out["word_ids"], split)
        return out

    def _labels(self, rows: dict[str, list[Any]], sentences: list[list[str]], word_ids: list[list[int]],
                split: str) -> tuple[list[list[int]], list[list[int]]]:
        names = self.info["label_names"]
        index = {n: i for i, n in enumerate(names)}
        inside = [index.get(continuation(n), i) for i, n in enumerate(names)]
        word_labels, token_labels = [], []
        names = [row_name(i, r) for i, r in zip(rows["id"], rows[ROW], strict=True)]
        for name, words, tags, ids in zip(names, sentences, self._tag_names(rows[self.tag_column], split),
                                          word_ids, strict=True):
            if len(tags) != len(words):
                raise UserError(f"{name} in {self.source.describe(split)} has {len(words)} tokens but "
                                 f"{len(tags)} tags; give one tag per token")
            labels = self._label_ids(tags, name, split, index)
            word_labels.append(labels)
            token_labels.append(self._align(labels, ids, inside))
        return word_labels, token_labels

    def _align(self, labels: list[int], word_ids: list[int], inside: list[int]) -> list[int]:
        """Word labels -> sub-token labels: the first sub-token of a word gets it, the rest -100 (or `inside`)."""
        out, prev = [], -1
        for w in word_ids:
            if w < 0:
                out.append(IGNORE)
            elif w != prev:
                out.append(labels[w])
            else:
                out.append(inside[labels[w]] if self.label_all_subtokens else IGNORE)
            prev = w
        return out

    def features(self, split: str) -> datasets.Dataset | None:
        ds = super().features(split)
        if ds is not None and split not in self._reported:
            self._reported.add(split)
            cut = sum(ds["truncated"])
            if cut:
                rank_zero_info(
                    f"lit_ft: {cut} of {len(ds)} sentences of {self.source.describe(split)} are longer than "
                    f"max_length={self.max_length} sub-tokens and were truncated (their cut-off words count as "
                    "tagged `O` in the metrics); raise data.max_length to keep them whole"
                )
        return ds

    # ---- batches -------------------------------------------------------------------------------
    @functools.cached_property
    def token_padder(self) -> DataCollatorForTokenClassification:
        return DataCollatorForTokenClassification(self.tokenizer, label_pad_token_id=IGNORE)

    def collate(self, rows: list[dict[str, Any]]) -> Batch:
        extra = {k: [row.pop(k) for row in rows] for k in _EXTRA if k in rows[0]}
        inputs = dict(self.token_padder(rows))
        left = self.tokenizer.padding_side == "left"
        batch: Batch = {"inputs": inputs, "id": extra["id"], "tokens": extra["tokens"],
                        "truncated": extra["truncated"],
                        "word_ids": _pad(extra["word_ids"], -1, inputs["input_ids"].shape[1], left)}
        if "word_labels" in extra:
            batch["word_labels"] = _pad(extra["word_labels"], IGNORE, max(map(len, extra["word_labels"])), False)
        return batch


def _pad(rows: list[list[int]], value: int, width: int, left: bool) -> torch.Tensor:
    """(batch, width) tensor of ragged rows, padded with `value` on the right (or the left)."""
    out = torch.full((len(rows), width), value, dtype=torch.long)
    for i, row in enumerate(rows):
        if row:
            start = width - len(row) if left else 0
            out[i, start : start + len(row)] = torch.tensor(row)
    return out
