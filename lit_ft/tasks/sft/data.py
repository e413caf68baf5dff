"""SFT data: rows of any of the three shapes -> token ids, labels on the responses only, generation prompts."""

from __future__ import annotations

import functools
from collections.abc import Iterable
from typing import Any

import datasets
import torch
from lightning.pytorch.utilities import rank_zero_info

from lit_ft.datamodule import TaskDataModule
from lit_ft.errors import UserError
from lit_ft.packing.bins import PackedBatchSampler, fill, stack_bins
from lit_ft.rows import ROW, row_name
from lit_ft.sampler import LengthGroupedBatchSampler
from lit_ft.task import IGNORE, Batch
from lit_ft.tasks.sft.formats import AlpacaRows, ChatRows, Format, PromptCompletionRows, RowFormat, detect_format
from lit_ft.tasks.sft.render import ChatRenderer, Rendered, plain, with_system

EVAL_KEYS = ("prompt_ids", "prompt", "references", "tests")


def token_labels(ids: list[int], offsets: list[tuple[int, int]], spans: list[tuple[int, int]]) -> list[int]:
    """Labels that keep a token when it starts inside a trained character span, else -100.

    Tokens the tokenizer adds itself (BOS) have empty offsets and never train.
    """
    return [
        t if e > s and any(a <= s < b for a, b in spans) else IGNORE for t, (s, e) in zip(ids, offsets, strict=True)
    ]


class SFTData(TaskDataModule):
    """Supervised fine-tuning data for causal LMs: prompt/completion, Alpaca or chat rows.

    Args:
        format: `prompt_completion`, `alpaca`, `chat`, or `auto` (chosen from the columns).
        prompt_column: Prompt column (prompt_completion).
        completion_column: Completion column (prompt_completion).
        instruction_column: Instruction column (alpaca).
        input_column: Optional input column (alpaca); empty inputs use the no-input Alpaca prompt.
        output_column: Response column (alpaca).
        history_column: Optional column of earlier [user, assistant] pairs (LLaMA-Factory style; chat template).
        messages_column: Column of `{role, content}` lists (chat).
        tests_column: Column of test asserts for code generation (the `pass@1` metric).
        prompt_template: Format string over the row's columns that replaces the prompt (list values joined by
            newlines), for example `"{text}\\nYour code should pass these tests:\\n{test_list}\\n"`.
        use_chat_template: Render prompt_completion and alpaca rows as a user turn and an assistant turn with the
            chat template (chat rows always use it).
        system_prompt: System message for chat-template rendering (kept out when a conversation has its own);
            without a chat template it is put before the prompt, followed by a blank line.
        chat_template: Jinja template overriding the tokenizer's; tokenizers without one use
            `FALLBACK_CHAT_TEMPLATE` (`### Role:` headers, EOS after each assistant turn).
        train_on_prompt: Put the loss on every token, not only on the responses.
        drop_untrainable: Drop examples left without a trained token (all response truncated away, or empty)
            instead of failing; the count is reported.
        packing: Pack training examples into rows of `max_length` tokens (best-fit-decreasing, per epoch), with
            no padding between examples and attention kept within each example (`lit_ft.packing.bins`); `batch_size`
            then counts packed rows. Evaluation stays unpacked. Needs a backbone that honours packed `position_ids`.
        **kwargs: Source, tokenizer and batching settings of `TaskDataModule` (`max_length` bounds prompt +
            response; longer examples are cut at the end and counted).
    """

    task_name = "sft"

    def __init__(
        self,
        format: Format = "auto",
        prompt_column: str = "prompt",
        completion_column: str = "completion",
        instruction_column: str = "instruction",
        input_column: str | None = "input",
        output_column: str = "output",
        history_column: str | None = None,
        messages_column: str = "messages",
        tests_column: str | None = None,
        prompt_template: str | None = None,
        use_chat_template: bool = False,
        system_prompt: str | None = None,
        chat_template: str | None = None,
        train_on_prompt: bool = False,
        drop_untrainable: bool = False,
        packing: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.format = format
        self.chat_rows = ChatRows(messages_column)
        self.alpaca_rows = AlpacaRows(prompt_column=instruction_column, response_column=output_column,
                                      input_column=input_column, history_column=history_column,
                                      prompt_template=prompt_template)
        self.prompt_rows = PromptCompletionRows(prompt_column=prompt_column, response_column=completion_column,
                                                history_column=history_column, prompt_template=prompt_template)
        self.formats: dict[str, RowFormat] = {
            "chat": self.chat_rows, "alpaca": self.alpaca_rows, "prompt_completion": self.prompt_rows,
        }
        self.tests_column = tests_column
        self.prompt_template = prompt_template
        self.use_chat_template = use_chat_template
        self.system_prompt = system_prompt
        self.chat_template = chat_template
        self.train_on_prompt = train_on_prompt
        self.drop_untrainable = drop_untrainable
        self.packing = packing
        self.report: dict[str, dict[str, int]] = {}
        self._told: set[str] = set()  # splits whose cut and dropped examples the run has printed

    # ---- rows -> text --------------------------------------------------------------------------
    @functools.cached_property
    def renderer(self) -> ChatRenderer:
        return ChatRenderer(self.tokenizer, self.chat_template)

    def line_column_name(self) -> str | None:
        return self.prompt_rows.prompt_column

    def resolve_format(self, rows: dict[str, list[Any]], split: str = "train") -> str:
        if self.format != "auto":
            return self.format
        if split == "predict" and self.prompt_rows.prompt_column in rows and self.chat_rows.messages_column not in rows:
            return "prompt_completion"  # prompts to complete (a plain text file: one prompt per line)
        return detect_format(list(rows), self.chat_rows, self.alpaca_rows, self.prompt_rows)

    def render(self, row: dict[str, Any], fmt: str, where: str) -> Rendered:
        """The row's conversation (its shape's transform), with the chat template or as plain prompt + response."""
        templated = fmt == "chat" or self.use_chat_template
        messages = self.formats[fmt].messages(row, where, templated)
        if templated:
            return self.renderer.render(with_system(messages, self.system_prompt), row["id"], where)
        prompt = messages[0]["content"]
        answer = messages[1]["content"] if len(messages) > 1 else None
        return plain(f"{self.system_prompt}\n\n{prompt}" if self.system_prompt else prompt, answer)

    def _check_response(self, row: dict[str, Any], fmt: str, where: str) -> bool:
        """Whether a row to train or score on has its responses: a missing cell is an error, a blank response
        untrainable (an error, or False with `drop_untrainable`); otherwise it would train only the EOS."""
        found = self.formats[fmt].response(row)
        if found and row.get(found[1], "") is None:
            raise UserError(f"{row_name(row['id'], row[ROW])} in {where} has no {found[0]} '{found[1]}' value; fill "
                            "it, drop the row, or put rows without responses in data.source.predict")
        blank = self.formats[fmt].blank_response(row)
        if blank is None or self.drop_untrainable:
            return blank is None
        raise UserError(f"{row_name(row['id'], row[ROW])} in {where}: the response ({blank}) is empty, so there is "
                        "nothing to learn or score; fill it, drop the row, or set data.drop_untrainable: true to skip "
                        "such rows")

    # ---- text -> features ----------------------------------------------------------------------
    def _tokenize(self, text: str, special: bool) -> tuple[list[int], list[tuple[int, int]]]:
        if not self.tokenizer.is_fast:
            raise UserError(f"SFT masking needs a fast tokenizer (offsets); '{self.tokenizer_name}' has a slow one")
        bos = self.tokenizer.bos_token
        add = not (special and bos and text.startswith(bos))
        enc = self.tokenizer(text, add_special_tokens=add, return_offsets_mapping=True)
        return enc["input_ids"], enc["offset_mapping"]

    def encode(self, rows: dict[str, list[Any]], split: str) -> dict[str, list[Any]]:
        fmt = self.resolve_format(rows, split)
        self.require_columns(rows, split, self.formats[fmt].required(split))
        where = self.split_place(split)
        # dropped rows (drop_untrainable) change the count: each feature names its row
        out: dict[str, list[Any]] = {"input_ids": [], "attention_mask": [], "truncated": [], "id": [], ROW: []}
        if split != "predict":
            out["labels"] = []
        if split != "train":
            out.update({k: [] for k in EVAL_KEYS if k != "tests" or self.tests_column})
        for i in range(len(rows["id"])):
            row = {k: v[i] for k, v in rows.items()}
            rendered = self.render(row, fmt, where)
            if split != "predict" and not self._check_response(row, fmt, where):
                continue
            self._encode_row(row, rendered, split, where, out)
        return out

    def _encode_row(
        self, row: dict[str, Any], rendered: Rendered, split: str, where: str, out: dict[str, list[Any]]
    ) -> None:
        eos = self.tokenizer.eos_token_id
        if split == "predict":
            ids, labels = self._prompt_ids(rendered, row), None
        else:
            ids, offsets = self._tokenize(rendered.text, rendered.special)
            labels = list(ids) if self.train_on_prompt else token_labels(ids, offsets, rendered.spans)
            last = rendered.spans[-1] if rendered.spans else None
            closed = last and any(t == eos and last[0] <= s < last[1] for t, (s, _) in zip(ids, offsets, strict=True))
            if eos is not None and last and last[1] == len(rendered.text) and not closed:
                ids, labels = [*ids, eos], [*labels, eos]  # the model must learn to stop
        truncated = len(ids) > self.max_length
        ids = ids[: self.max_length]
        if labels is not None:
            labels = labels[: self.max_length]
            if all(t == IGNORE for t in labels[1:]):  # the first label is never predicted
                if self.drop_untrainable:
                    return
                raise UserError(
                    f"{row_name(row['id'], row[ROW])} in {where} has no response token to train on "
                    f"({'cut off at' if truncated else 'within'} data.max_length={self.max_length}; "
                    f"response {rendered.reference[:40]!r}); raise data.max_length, fix the row, or set "
                    "data.drop_untrainable: true to skip such rows"
                )
            out["labels"].append(labels)
        out["input_ids"].append(ids)
        out["attention_mask"].append([1] * len(ids))
        out["truncated"].append(truncated)
        out["id"].append(row["id"])
        out[ROW].append(row[ROW])
        if split != "train":
            self._eval_features(row, rendered, split, out)

    def _prompt_ids(self, rendered: Rendered, row: dict[str, Any]) -> list[int]:
        ids, _ = self._tokenize(rendered.prompt, rendered.special)
        return ids[-self.max_length :]  # keep the end of an over-long prompt: it leads into the response

    def _eval_features(self, row: dict[str, Any], rendered: Rendered, split: str, out: dict[str, list[Any]]) -> None:
        out["prompt_ids"].append(self._prompt_ids(rendered, row))
        out["prompt"].append(rendered.prompt)
        # a predict row without a response has nothing to compare with: no reference in its record
        out["references"].append([] if split == "predict" and not rendered.reference else [rendered.reference or ""])
        if self.tests_column:
            if self.tests_column not in row:
                self.require_columns(row, split, {"tests_column": self.tests_column})
            tests = row[self.tests_column]
            out["tests"].append([tests] if isinstance(tests, str) else list(tests))

    # ---- splits and batches --------------------------------------------------------------------
    def features(self, split: str) -> datasets.Dataset | None:
        known = split in self._features
        ds = super().features(split)
        if ds is not None and not known:
            self._report(split, ds)
        return ds

    def _report(self, split: str, ds: datasets.Dataset) -> None:
        raw = self.raw(split)
        total = len(raw) if raw is not None else len(ds)
        if total and not len(ds):  # nothing left to batch (the empty features have no columns either)
            raise UserError(
                f"every one of the {total} examples in {self.split_place(split)} was dropped by data.drop_untrainable: "
                f"none has a response token left within data.max_length={self.max_length}; raise "
                "data.max_length or fill the responses"
            )
        truncated = int(sum(ds["truncated"]))
        self.report[split] = {"examples": total, "truncated": truncated, "dropped": total - len(ds)}

    def setup(self, stage: str) -> None:
        super().setup(stage)
        line = self.report_line(self._told)
        self._told.update(self.report)
        if line:
            rank_zero_info(line)

    def report_line(self, told: Iterable[str] = ()) -> str | None:
        """The examples cut at `max_length` and dropped (`drop_untrainable`) in every loaded split not yet `told`,
        as one line (a run prints it once, after its data is loaded); None when nothing was cut or dropped."""
        counts = {split: n for split, n in self.report.items() if split not in set(told)}
        cut = [f"{n['truncated']} of {n['examples']} {split}" for split, n in counts.items() if n["truncated"]]
        dropped = [f"{n['dropped']} {split}" for split, n in counts.items() if n["dropped"]]
        parts = [f"{', '.join(cut)} examples longer than data.max_length={self.max_length} were cut"] if cut else []
        if dropped:
            parts.append(f"dropped {', '.join(dropped)} with no response token left (data.drop_untrainable)")
        return f"lit_ft sft: {'; '.join(parts)}" if parts else None

    def collate(self, rows: list[dict[str, Any]]) -> Batch:
        pad = self.tokenizer.pad_token_id
        width = max(len(r["input_ids"]) for r in rows)

        def padded(key: str, value: int) -> torch.Tensor:
            return torch.tensor([r[key] + [value] * (width - len(r[key])) for r in rows], dtype=torch.long)

        inputs = {"input_ids": padded("input_ids", pad), "attention_mask": padded("attention_mask", 0)}
        if "labels" in rows[0]:
            inputs["labels"] = padded("labels", IGNORE)
        batch: Batch = {"inputs": inputs, "id": [r["id"] for r in rows]}
        batch.update({k: [r[k] for r in rows] for k in EVAL_KEYS if k in rows[0]})
        return batch

    # ---- packing ---------------------------------------------------------------------------------
    def train_sampler(self, lengths: list[int], rank: int, world: int) -> LengthGroupedBatchSampler:
        if not self.packing:
            return super().train_sampler(lengths, rank, world)
        return PackedBatchSampler(lengths, self.batch_size, self.max_length, seed=self.shuffle_seed,
                                  group_batches=self.group_batches, rank=rank, world_size=world)

    def train_collate(self, rows: list[dict[str, Any]]) -> Batch:
        if not self.packing:
            return self.collate(rows)
        return {**stack_bins(rows, self.max_length, self.tokenizer.pad_token_id), "id": [r["id"] for r in rows]}

    def packing_summary(self) -> str | None:
        """`train packed into 12 rows of 128 tokens (8.5% empty)` for the first epoch; None without packing."""
        ds = self._features.get("train")  # only a loaded split: `test` and `predict` read no training data
        if not self.packing or ds is None:
            return None
        sampler = PackedBatchSampler(ds["length"], self.batch_size, self.max_length, seed=self.shuffle_seed,
                                     group_batches=self.group_batches)
        rows, empty = fill(ds["length"], sampler.bins(), self.max_length)
        return f"train packed into {rows:,} rows of {self.max_length} tokens ({empty:.1%} empty)"
