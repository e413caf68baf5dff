"""Preference pairs: rows of (prompt, chosen, rejected) in any of three shapes -> token ids -> pair batches.

Batch contract (what `collate` returns for train / validation / test; the `dpo` and `reward_model` tasks read it):

    {"inputs": {"input_ids": LongTensor[2B, L], "attention_mask": LongTensor[2B, L]}  (+ "token_type_ids" when the
                tokenizer makes them), rows 0..B-1 the chosen sequences (prompt + chosen completion), rows B..2B-1 the
                rejected ones of the same pairs, right padded;
     "completion_mask": BoolTensor[2B, L], True on the completion tokens (those whose log-probabilities count);
     "margin": FloatTensor[B], only when `margin_column` is set;
     "ref_chosen_logps", "ref_rejected_logps": FloatTensor[B], only when the features hold precomputed reference
                log-probabilities (columns of the same names);
     "prompt_ids": list of B token-id lists, each pair's prompt (to generate from);
     "id": list of B ids; the rows (`lit_ft.rows.ROW`) as every task's batches carry them}

Predict batches (rows with a prompt, or a single `text`, and no pair): `inputs` of B sequences (prompt, plus the
completion when a row has one), `completion_mask` as above, `prompt_ids` (list of B token-id lists) and `id`. A
predict file of pairs gives pair batches.
"""

from __future__ import annotations

import collections
import functools
import json
from typing import Any

import datasets
import torch

from lit_ft.datamodule import TaskDataModule, check_positive
from lit_ft.domains import PositiveInt
from lit_ft.errors import UserError
from lit_ft.example_view import decode, field, marked
from lit_ft.rows import ROW, row_name
from lit_ft.task import Batch
from lit_ft.tasks.preference.formats import HH_ASSISTANT, Format, NothingToPrefer, PairColumns
from lit_ft.tasks.preference.reference import REFERENCE_COLUMNS, cached_reference, with_reference_columns
from lit_ft.tasks.preference.tokens import Limits, PairIds, PairTokenizer, TruncationMode
from lit_ft.tasks.sft.render import ChatRenderer

DROPPED = "_dropped"  # why encode dropped a pair ("" when kept); counted and filtered out by `features`


class PreferenceData(TaskDataModule):
    """Preference pairs for DPO-family objectives and pairwise reward models.

    Args:
        format: `explicit` (prompt, chosen, rejected texts), `implicit` (chosen / rejected full texts sharing the
            prompt), `conversational` (chosen / rejected message lists, optional prompt message list), or `auto`
            (from the columns and the chosen values' type).
        prompt_column: Prompt column (explicit and conversational rows; predict rows).
        chosen_column: The preferred answer's column.
        rejected_column: The other answer's column.
        margin_column: Optional column of a float per pair (how much chosen is preferred), passed in batches as
            `margin` (reward models' margin loss).
        completion_column: Predict rows: an optional completion after the prompt, scored with it.
        text_column: Predict rows without a prompt: a whole text to score (reward models).
        assistant_marker: Implicit rows: the prompt both texts share ends after the last occurrence of this text
            (Anthropic HH-RLHF's assistant turn); without it, before the last whitespace they share.
        max_prompt_length: Longest prompt in tokens, cut by `truncation_mode`; None: prompts are not cut, and a
            pair whose prompt leaves no room for a completion token within `max_length` is dropped (counted).
        truncation_mode: `keep_end` keeps the end of a long prompt (it leads into the answers), `keep_start` its
            start. Completions are always cut at their end.
        chat_template: Jinja template overriding the tokenizer's for conversational rows (tokenizers without one
            use SFT's `FALLBACK_CHAT_TEMPLATE`).
        drop_untrainable: Drop pairs with nothing to prefer (an empty answer, also once the shared prompt is taken
            off; two equal answers) instead of failing on the first; they are counted in the data line. Missing
            values and malformed rows still fail.
        **kwargs: Source, tokenizer and batching settings of `TaskDataModule`; `max_length` bounds prompt +
            completion, per side.
    """

    task_name = "preference"
    task_names = ("dpo", "reward_model")

    def __init__(
        self,
        format: Format = "auto",
        prompt_column: str = "prompt",
        chosen_column: str = "chosen",
        rejected_column: str = "rejected",
        margin_column: str | None = None,
        completion_column: str = "completion",
        text_column: str = "text",
        assistant_marker: str = HH_ASSISTANT,
        max_prompt_length: PositiveInt | None = None,
        truncation_mode: TruncationMode = "keep_end",
        chat_template: str | None = None,
        drop_untrainable: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        check_positive({"data.max_prompt_length": max_prompt_length})
        if max_prompt_length is not None and max_prompt_length >= self.max_length:
            raise UserError(f"data.max_prompt_length ({max_prompt_length}) must be below data.max_length "
                            f"({self.max_length}) to leave room for the completions; lower it or raise "
                            "data.max_length")
        self.format = format
        self.columns = PairColumns(prompt_column, chosen_column, rejected_column, assistant_marker,
                                   completion_column, text_column)
        self.margin_column = margin_column
        self.max_prompt_length = max_prompt_length
        self.truncation_mode = truncation_mode
        self.chat_template = chat_template
        self.drop_untrainable = drop_untrainable
        self.report: dict[str, dict[str, int]] = {}

    # ---- rows -> token ids ---------------------------------------------------------------------
    @functools.cached_property
    def pair_tokenizer(self) -> PairTokenizer:
        return PairTokenizer(self.tokenizer, ChatRenderer(self.tokenizer, self.chat_template))

    @functools.cached_property
    def limits(self) -> Limits:
        tok = self.tokenizer
        lead = frozenset(i for i in (tok.bos_token_id, tok.cls_token_id) if i is not None)
        return Limits(self.max_length, self.max_prompt_length, self.truncation_mode, lead)

    def line_column_name(self) -> str | None:
        return self.columns.prompt_column  # a plain text file holds prompts, one per line (predict)

    def encode(self, rows: dict[str, list[Any]], split: str) -> dict[str, list[Any]]:
        if split == "predict" and self.columns.chosen_column not in rows:
            return self._encode_singles(rows, split)
        where = self.split_place(split)
        fmt = self.format if self.format != "auto" else self.columns.detect(rows, where)
        self.require_columns(rows, split, {**self.columns.required(fmt), "margin_column": self.margin_column})
        keys = ["prompt_ids", "chosen_ids", "rejected_ids", "truncated", "length", DROPPED]
        out: dict[str, list[Any]] = {k: [] for k in keys + (["margin"] if self.margin_column else [])}
        for i in range(len(rows["id"])):
            row = {k: v[i] for k, v in rows.items()}
            ids, why = self._pair_ids(row, fmt, where)
            # a dropped pair stays a row here, marked with why, so `features` can count the reasons from the cache
            ids = ids or PairIds([], [], [])
            for key, value in (("prompt_ids", ids.prompt), ("chosen_ids", ids.chosen),
                               ("rejected_ids", ids.rejected), ("truncated", ids.truncated), (DROPPED, why),
                               ("length", len(ids.prompt) + max(len(ids.chosen), len(ids.rejected)))):
                out[key].append(value)
            if self.margin_column:
                out["margin"].append(self._margin(row, where) if not why else 0.0)
        return out

    def _pair_ids(self, row: dict[str, Any], fmt: str, where: str) -> tuple[PairIds | None, str]:
        """The pair's ids within the limits, or None and why it is dropped (`no_room`, `untrainable`)."""
        try:
            pair = self.columns.pair(row, fmt, where)
        except NothingToPrefer:
            if not self.drop_untrainable:
                raise
            return None, "untrainable"
        ids = self.limits.pair(self.pair_tokenizer.pair(pair))
        return ids, "" if ids is not None else "no_room"

    def _margin(self, row: dict[str, Any], where: str) -> float:
        value = row[self.margin_column or ""]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise UserError(f"{row_name(row['id'], row[ROW])} in {where}: margin_column '{self.margin_column}' holds "
                            f"{value!r}, not a number; fill it or drop the row")
        return float(value)

    def _encode_singles(self, rows: dict[str, list[Any]], split: str) -> dict[str, list[Any]]:
        """Predict rows: a prompt (plus an optional completion) or a whole text, each one sequence."""
        where = self.split_place(split)
        prompt_col, text_col = self.columns.prompt_column, self.columns.text_column
        if prompt_col not in rows and text_col not in rows:
            found = sorted(c for c in rows if c != "id" and not c.startswith("_"))
            raise UserError(f"{where} has columns {found}: predict rows need a prompt ('{prompt_col}', with an "
                            f"optional '{self.columns.completion_column}') or a text to score ('{text_col}'); set "
                            "data.prompt_column or data.text_column")
        out: dict[str, list[Any]] = {k: [] for k in ("prompt_ids", "completion_ids", "truncated", "length")}
        for i in range(len(rows["id"])):
            row = {k: v[i] for k, v in rows.items()}
            prompt, completion = self.columns.single(row, where)
            ids, rest = self.pair_tokenizer.single(prompt, completion)
            kept, rest, cut = self.limits.single(ids, rest)
            for key, value in (("prompt_ids", kept), ("completion_ids", rest), ("truncated", cut),
                               ("length", len(kept) + len(rest))):
                out[key].append(value)
        return out

    # ---- splits and what a run reports ---------------------------------------------------------
    def features(self, split: str) -> datasets.Dataset | None:
        known = split in self._features
        ds = super().features(split)
        if ds is None or known or DROPPED not in ds.column_names:
            return ds  # predict rows (never dropped) carry no mark
        reasons = collections.Counter(ds[DROPPED])
        kept = ds.filter(lambda why: not why, input_columns=DROPPED, desc=f"dropping {split} pairs")
        self._features[split] = kept.remove_columns(DROPPED)
        self._count(split, self._features[split], reasons)
        return self._features[split]

    def _count(self, split: str, ds: datasets.Dataset, reasons: collections.Counter[str]) -> None:
        raw = self.raw(split)
        total = len(raw) if raw is not None else len(ds)
        if total and not len(ds):
            raise UserError(f"every one of the {total} pairs in {self.split_place(split)} was dropped "
                            f"({reasons['no_room']} with no completion token left within "
                            f"data.max_length={self.max_length} after its prompt, {reasons['untrainable']} with "
                            "nothing to prefer); raise data.max_length, set data.max_prompt_length to cut long "
                            "prompts, or fix the pairs")
        self.report[split] = {"examples": total, "truncated": int(sum(ds["truncated"])), "dropped": total - len(ds),
                              "no_room": reasons["no_room"], "untrainable": reasons["untrainable"]}

    def split_notes(self, split: str) -> list[str]:
        counts = self.report.get(split, {})
        notes = []
        if counts.get("no_room"):
            notes.append(f"{counts['no_room']:,} dropped: no completion token fits data.max_length={self.max_length} "
                         "after the prompt (set data.max_prompt_length to cut long prompts instead)")
        if counts.get("untrainable"):
            notes.append(f"{counts['untrainable']:,} dropped with nothing to prefer: an empty or equal answer "
                         "(data.drop_untrainable)")
        return notes

    def example_keys(self, rows: dict[str, list[Any]]) -> list[str]:
        """The prompt and the completions (tab-separated), as the rows hold them."""
        names = [self.columns.prompt_column, self.columns.chosen_column, self.columns.rejected_column,
                 self.columns.completion_column, self.columns.text_column]
        columns = [c for c in dict.fromkeys(names) if c in rows]
        if not columns:
            return super().example_keys(rows)

        def text(value: Any) -> str:
            return value if isinstance(value, str) else json.dumps(value, default=str)

        return ["\t".join(text(rows[c][i]) for c in columns) for i in range(len(rows["id"]))]

    def prediction_inputs(self, split: str) -> list[dict[str, Any]]:
        """Per row: its prompt (text or messages), completion and text, those the row holds."""
        raw = self.raw(split)
        if raw is None:
            return []
        cols = self.columns
        keys = {cols.prompt_column: "prompt", cols.completion_column: "completion", cols.text_column: "text"}
        present = {c: k for c, k in keys.items() if c in raw.column_names}
        values = {c: raw[c] for c in present}
        return [{k: values[c][i] for c, k in present.items() if values[c][i] is not None} for i in range(len(raw))]

    def show_example(self, feature: dict[str, Any]) -> list[str]:
        """The prompt, then each completion with its tokens (those with a log-probability) in `[[...]]`."""
        tok, prompt = self.tokenizer, feature["prompt_ids"]
        lines = field("prompt", decode(tok, prompt))
        sides = ("chosen", "rejected") if "chosen_ids" in feature else ("completion",)
        for side in sides:
            ids = feature[f"{side}_ids"]
            text = marked(tok, [*prompt[-1:], *ids], [False] * len(prompt[-1:]) + [True] * len(ids))
            shown = text[len(decode(tok, prompt[-1:])):] if prompt else text
            shown = shown[1:] if shown.startswith(" [[") else shown  # the space decoding puts after the prompt
            lines += field(f"{side} ({len(ids)} tokens)", shown)
        return lines

    # ---- batches -------------------------------------------------------------------------------
    def collate(self, rows: list[dict[str, Any]]) -> Batch:
        if "chosen_ids" not in rows[0]:
            batch = self._padded([r["prompt_ids"] for r in rows], [r["completion_ids"] for r in rows])
            return {**batch, "prompt_ids": [r["prompt_ids"] for r in rows], "id": [r["id"] for r in rows]}
        prompts = [r["prompt_ids"] for r in rows] * 2
        batch = self._padded(prompts, [r["chosen_ids"] for r in rows] + [r["rejected_ids"] for r in rows])
        for key in ("margin", *REFERENCE_COLUMNS):
            if key in rows[0]:
                batch[key] = torch.tensor([float(r[key]) for r in rows], dtype=torch.float32)
        batch["prompt_ids"] = [r["prompt_ids"] for r in rows]
        batch["id"] = [r["id"] for r in rows]
        return batch

    def _padded(self, prompts: list[list[int]], completions: list[list[int]]) -> Batch:
        """Prompt + completion per sequence, right padded: `inputs` and the `completion_mask`."""
        seqs = [p + c for p, c in zip(prompts, completions, strict=True)]
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0

        def padded(values: list[list[int]], fill: int) -> list[list[int]]:
            return [v + [fill] * (width - len(v)) for v in values]

        # (sequences, width)
        inputs = {"input_ids": torch.tensor(padded(seqs, pad), dtype=torch.long),
                  "attention_mask": torch.tensor(padded([[1] * len(s) for s in seqs], 0), dtype=torch.long)}
        if "token_type_ids" in self.tokenizer.model_input_names:
            inputs["token_type_ids"] = torch.zeros_like(inputs["input_ids"])
        marks = [[0] * len(p) + [1] * len(c) for p, c in zip(prompts, completions, strict=True)]
        return {"inputs": inputs, "completion_mask": torch.tensor(padded(marks, 0), dtype=torch.bool)}

    # ---- precomputed reference log-probabilities (`lit_ft.tasks.preference.reference`) -------
    def with_reference(self, split: str, chosen: list[float], rejected: list[float],
                       model_key: str | None = None) -> None:
        """Add the reference model's log-probabilities of each feature's chosen and rejected completion (in
        feature order) to the split's features as `ref_chosen_logps` / `ref_rejected_logps`; batches then carry
        them (the `dpo` task's `precompute_ref_log_probs`).

        With `model_key` (what identifies the reference model: its weights' source, revision, precision) they are
        also stored in datasets' cache next to the features, under a key of the features and `model_key`, so
        `load_reference` finds them for the same data and model, and a different model never reuses them.
        Without it they live as long as this data module."""
        self._features[split] = with_reference_columns(self._require(split), chosen, rejected, model_key, split)

    def load_reference(self, split: str, model_key: str) -> bool:
        """Adopt the reference log-probabilities `with_reference` stored for this split's features and
        `model_key`; False (nothing changed) when datasets' cache does not hold them."""
        found = cached_reference(self._require(split), model_key)
        if found is not None:
            self._features[split] = found
        return found is not None
