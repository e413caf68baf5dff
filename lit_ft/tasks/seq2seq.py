"""Sequence-to-sequence generation (summarization, translation) with `AutoModelForSeq2SeqLM` (T5, BART, Marian)."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import datasets
from torch import nn
from transformers import AutoModelForSeq2SeqLM, DataCollatorForSeq2Seq

from lit_ft.backbone import load_tokenizer
from lit_ft.datamodule import TaskDataModule, check_positive
from lit_ft.domains import NonNegativeInt, PositiveInt
from lit_ft.errors import UserError
from lit_ft.example_view import decode, field
from lit_ft.generation.task import GenerationTask
from lit_ft.loading import LoadOptions, load_pretrained
from lit_ft.source import FILE_FORMATS, bom_safe, local_path
from lit_ft.task import IGNORE, Batch, label_tokens

SUMMARIZATION_METRICS = ["rouge1", "rouge2", "rougeL", "rougeLsum"]
TRANSLATION_METRICS = ["bleu", "chrf"]


class Seq2SeqData(TaskDataModule):
    """Rows with a source text and a target text (a summary, a translation).

    Three layouts are read: columns (`source_column` / `target_column`) of any file or hub dataset; the hub
    translation shape `{"translation": {"en": ..., "de": ...}}` (set `source_lang` and `target_lang`); and
    line-aligned parallel text files: with the languages set, a local split named without a file suffix
    (`data/val`) reads `data/val.<source_lang>` and, when it exists, `data/val.<target_lang>`.

    Args:
        source_column: Column with the input text.
        target_column: Column with the target text (the teacher-forced labels).
        reference_columns: Columns holding the references of evaluation splits when they are not
            `target_column` (several give multi-reference metrics, as DialogSum's `summary1..3`); the first one
            also gives the labels of the loss where `target_column` is missing.
        source_prefix: Text put before every source (T5 style, for example `"summarize: "`).
        source_lang: Source language key of the translation column or suffix of parallel text files.
        target_lang: Target language key of the translation column or suffix of parallel text files.
        translation_column: Column of `{language: text}` dicts read when the languages are set.
        max_target_length: Longest tokenized target; longer targets are truncated (`max_length` is the source's).
        **kwargs: Source, tokenizer and batching settings of `TaskDataModule`.
    """

    task_name = "seq2seq"

    def __init__(
        self,
        source_column: str = "source",
        target_column: str = "target",
        reference_columns: list[str] | None = None,
        source_prefix: str = "",
        source_lang: str | None = None,
        target_lang: str | None = None,
        translation_column: str = "translation",
        max_target_length: PositiveInt = 128,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if (source_lang is None) != (target_lang is None):
            raise UserError(f"set both data.source_lang and data.target_lang (got {source_lang!r}, {target_lang!r})")
        self.source_column = source_column
        self.target_column = target_column
        self.reference_columns = reference_columns
        self.source_prefix = source_prefix
        self.source_lang = source_lang
        self.target_lang = target_lang
        self.translation_column = translation_column
        self.max_target_length = max_target_length
        check_positive({"data.max_target_length": max_target_length})

    def line_column_name(self) -> str | None:
        return self.source_column

    def length_settings(self) -> dict[str, int]:
        return {**super().length_settings(), "data.max_target_length": self.max_target_length}

    def build_info(self) -> dict[str, Any]:
        return {"source_lang": self.source_lang, "target_lang": self.target_lang, "source_prefix": self.source_prefix}

    def load_split(self, split: str) -> datasets.Dataset | None:
        where = self.source.location(split)
        parallel = where is not None and self.source.hub is None and self.source_lang is not None
        if not parallel or self.source.format != "auto" or Path(str(where)).suffix.lower() in FILE_FORMATS:
            return super().load_split(split)
        assert where is not None and self.source_lang is not None and self.target_lang is not None
        return load_parallel_text(where, self.source_lang, self.target_lang, self.translation_column,
                                  self.source.encoding, key=f"data.source.{split}")

    def encode(self, rows: dict[str, list[Any]], split: str) -> dict[str, list[Any]]:
        sources, labels, references = self._texts(rows, split)
        prefixed = [self.source_prefix + s for s in sources]
        out = dict(self.tokenizer(prefixed, truncation=True, max_length=self.max_length))
        out["prompt"] = sources
        if labels is not None:
            targets = self.tokenizer(text_target=labels, truncation=True, max_length=self.max_target_length)
            out["labels"] = targets["input_ids"]
            out["references"] = references
        return out

    def example_keys(self, rows: dict[str, list[Any]]) -> list[str]:
        if self.source_lang and self.translation_column in rows:
            return [str((pair or {}).get(self.source_lang)) for pair in rows[self.translation_column]]
        if self.source_column not in rows:
            return super().example_keys(rows)
        return [str(s) for s in rows[self.source_column]]

    def cut_inputs(self, split: str) -> int:
        """Examples whose source reaches `max_length` or whose target reaches `max_target_length`."""
        ds = self.features(split)
        if ds is None:
            return 0
        targets = ds["labels"] if "labels" in ds.column_names else [[]] * len(ds)
        return sum(1 for n, t in zip(ds["length"], targets, strict=True)
                   if n >= self.max_length or len(t) >= self.max_target_length)

    def show_example(self, feature: dict[str, Any]) -> list[str]:
        """The encoder's input, then the target the decoder is trained on (every target token has a loss)."""
        lines = field("source (encoder input)", decode(self.tokenizer, feature["input_ids"]))
        labels = feature.get("labels")
        if labels is None:
            return [*lines, "target: none (predict split)"]
        return [*lines, *field(f"target (decoder labels, {len(labels)} tokens with a loss)",
                               decode(self.tokenizer, [t for t in labels if t != IGNORE]))]

    def _texts(self, rows: dict[str, list[Any]], split: str) -> tuple[list[str], list[str] | None, Any]:
        """Source texts, label texts and references per row; no labels or references for a predict split without
        targets."""
        if self.source_lang and self.translation_column in rows:
            return self._translation_texts(rows, split)
        self.require_columns(rows, split, {"source_column": self.source_column})
        sources = self._column(rows, self.source_column, split)
        ref_columns = [c for c in self.reference_columns or [] if c in rows]
        label_column = self.target_column if self.target_column in rows else next(iter(ref_columns), None)
        if label_column is None:
            if split != "predict":
                self.require_columns(rows, split, {"target_column": self.target_column})
            return sources, None, None
        labels = self._column(rows, label_column, split)
        if not ref_columns:
            return sources, labels, [[t] for t in labels]
        columns = (rows[c] for c in ref_columns)
        return sources, labels, [[str(v) for v in vs if v is not None] for vs in zip(*columns, strict=True)]

    def _column(self, rows: dict[str, list[Any]], column: str, split: str) -> list[str]:
        setting = {self.source_column: "source_column", self.target_column: "target_column"}.get(column,
                                                                                            "reference_columns")
        return self.texts(rows, split, setting, column)

    def _translation_texts(self, rows: dict[str, list[Any]], split: str) -> tuple[list[str], list[str] | None, Any]:
        pairs, source_lang, target_lang = rows[self.translation_column], str(self.source_lang), str(self.target_lang)
        sources = self._lang_texts(pairs, source_lang, rows["id"], split)
        if split == "predict" and all(p.get(target_lang) is None for p in pairs):
            return sources, None, None
        labels = self._lang_texts(pairs, target_lang, rows["id"], split)
        return sources, labels, [[t] for t in labels]

    def _lang_texts(self, pairs: list[dict[str, Any]], lang: str, ids: list[str], split: str) -> list[str]:
        for pair, row_id in zip(pairs, ids, strict=True):
            if pair.get(lang) is None:
                raise UserError(
                    f"row '{row_id}' of {self.source.describe(split)}: column '{self.translation_column}' has no "
                    f"'{lang}' text (keys {sorted(pair)}); set data.source_lang / data.target_lang"
                )
            if not str(pair[lang]).strip():  # a blank line of a parallel file: nothing to translate or learn
                raise UserError(f"row '{row_id}' of {self.source.describe(split)}: column '{self.translation_column}' "
                                f"has an empty '{lang}' text; fill it or drop the row")
        return [str(p[lang]) for p in pairs]

    @functools.cached_property
    def padder(self) -> DataCollatorForSeq2Seq:  # type: ignore[override]
        return DataCollatorForSeq2Seq(self.tokenizer, label_pad_token_id=IGNORE)

    def collate(self, rows: list[dict[str, Any]]) -> Batch:
        extra = {key: [row.pop(key, None) for row in rows] for key in ("id", "prompt", "references")}
        for row in rows:
            row.pop("length", None)
        prompt_ids = [list(row["input_ids"]) for row in rows]
        # the seq2seq collator sets `labels: None` for rows without targets
        inputs = {k: v for k, v in self.padder(rows).items() if v is not None}
        batch: Batch = {"inputs": inputs, "prompt_ids": prompt_ids}
        # ids may be missing (None): the batch keeps them; prompts and references are absent when a split has none
        batch.update({key: values for key, values in extra.items() if key == "id" or values[0] is not None})
        return batch


def load_parallel_text(stem: str, source_lang: str, target_lang: str, column: str = "translation",
                       encoding: str = "utf-8", key: str = "data file") -> datasets.Dataset:
    """Line-aligned `<stem>.<source_lang>` and (optional) `<stem>.<target_lang>` as rows of `{column: {lang: text}}`."""
    files = {lang: local_path(f"{stem}.{lang}") for lang in (source_lang, target_lang)}
    if not files[source_lang].is_file():
        raise UserError(
            f"{key}: '{stem}' is neither a data file ({sorted(FILE_FORMATS)}) nor the stem of parallel text files: "
            f"'{files[source_lang]}' does not exist; fix the path or data.source_lang"
        )
    lines = {lang: _lines(path, encoding) for lang, path in files.items() if path.is_file()}
    counts = {str(files[lang]): len(text) for lang, text in lines.items()}
    if len(set(counts.values())) > 1:
        raise UserError(f"{key}: parallel files must have the same number of lines; got {counts}")
    rows = [dict(zip(lines, texts, strict=True)) for texts in zip(*lines.values(), strict=True)]
    return datasets.Dataset.from_dict({column: rows})


def _lines(path: Path, encoding: str) -> list[str]:
    text = path.read_text(encoding=bom_safe(encoding)).split("\n")
    if text and text[-1] == "":
        text.pop()
    return [line.rstrip("\r") for line in text]


class Seq2SeqTask(GenerationTask):
    """Text-to-text generation with `AutoModelForSeq2SeqLM`; evaluation generates and scores the text.

    Args:
        info: Languages and source prefix from the data.
        metrics: Metrics reported as `val/<name>` and `test/<name>`, any of `rouge1`, `rouge2`, `rougeL`,
            `rougeLsum`, `bleu`, `chrf`, `exact_match` (`lit_ft.generation.text_metrics`); null: ROUGE-1/2/L/Lsum, or
            BLEU and chrF when the data has languages (translation).
        monitor: Metric that checkpointing and early stopping watch: one of `metrics` (maximised) or `loss` (the
            teacher-forced `val/loss`, minimised); null: `bleu` if listed, else `rougeL`, else the first metric.
        generate_examples: Generate for the first this many rows of each eval split (file order); null (the
            default): all, so the metrics cover the whole split.
        max_new_tokens: Longest generated output, in tokens.
        generate_kwargs: Further `model.generate` arguments, for example `{num_beams: 4}` (beam search) or
            `{do_sample: true, top_p: 0.9}`; null: greedy.
        sample_rows: Source / reference / prediction rows logged after each evaluation epoch.
        rouge_stemmer: Porter-stem words before ROUGE matching.
    """

    name = "seq2seq"
    datamodule = Seq2SeqData
    pipeline_tag = "text2text-generation"
    peft_task_type = "SEQ_2_SEQ_LM"
    throughput_unit = "tokens"
    prompt_field = "source"

    def __init__(
        self,
        info: dict[str, Any],
        metrics: list[str] | None = None,
        monitor: str | None = None,
        generate_examples: NonNegativeInt | None = None,
        max_new_tokens: PositiveInt = 128,
        generate_kwargs: dict[str, Any] | None = None,
        sample_rows: NonNegativeInt = 4,
        rouge_stemmer: bool = True,
    ) -> None:
        translation = info.get("target_lang") is not None
        names = list(metrics or (TRANSLATION_METRICS if translation else SUMMARIZATION_METRICS))
        default = next((m for m in ("bleu", "rougeL") if m in names), names[0] if names else "loss")
        super().__init__(info, names, monitor or default, generate_examples, max_new_tokens, generate_kwargs,
                         sample_rows, use_stemmer=rouge_stemmer)

    def build_model(self, backbone: str, load: LoadOptions) -> nn.Module:
        self.tokenizer = load_tokenizer(backbone)
        return load_pretrained(AutoModelForSeq2SeqLM, backbone, load)

    def usage(self, model_id: str) -> str:
        """`generate()` on the source with the data's prefix: Transformers 5 has no text-to-text pipeline."""
        prefix = self.info.get("source_prefix") or ""
        return (
            "from transformers import AutoModelForSeq2SeqLM, AutoTokenizer\n\n"
            f'tokenizer = AutoTokenizer.from_pretrained("{model_id}")\n'
            f'model = AutoModelForSeq2SeqLM.from_pretrained("{model_id}")\n'
            f'inputs = tokenizer({prefix!r} + "Your text here", return_tensors="pt")\n'
            "print(tokenizer.decode(model.generate(**inputs)[0], skip_special_tokens=True))"
        )

    def forward(self, model: nn.Module, batch: Batch) -> Any:
        # without labels (predict on sources only) there is no decoder input: generation does the work
        return model(**batch["inputs"]) if "labels" in batch["inputs"] else None

    def loss_weight(self, batch: Batch) -> int:
        return label_tokens(batch)  # the decoder's loss: a mean over the target tokens
