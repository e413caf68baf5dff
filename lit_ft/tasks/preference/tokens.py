"""Preference pairs -> token ids, as TRL 1.16's `DPOTrainer` tokenizes them, and the length limits.

TRL's tokenize step (`DPOTrainer._prepare_dataset`), followed here so lit_ft and TRL train on the same tokens:
- text pairs: the end token (EOS) is appended to each completion's text unless it already ends with it; the prompt
  and prompt + completion are tokenized whole, with the tokenizer's own special tokens (BOS);
- conversational pairs: the prompt is rendered with the generation prompt, prompt + completion without, by the chat
  template (`lit_ft.tasks.sft.render.ChatRenderer`, the one SFT renders with), and tokenized without adding special
  tokens when the text already starts with BOS (the template wrote it);
- the completion starts where the tokenized prompt and prompt + completion diverge (tokens may merge across the
  boundary), the shorter of the two sides deciding, so both completions follow the same prompt ids.

Two departures, both where TRL cannot run: a tokenizer without EOS (BERT-style encoders, for reward models) ends
completions with its SEP token; and a tokenizer that already closes every sequence with that token (BERT's
`[CLS] ... [SEP]`) gets no second one.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Literal

from lit_ft.tasks.preference.formats import Pair
from lit_ft.tasks.sft.render import ChatRenderer, Message

TruncationMode = Literal["keep_end", "keep_start"]


@dataclass(frozen=True)
class PairIds:
    """A pair's token ids: the shared prompt and the two completions (EOS included); `truncated` when cut."""

    prompt: list[int]
    chosen: list[int]
    rejected: list[int]
    truncated: bool = False


def common_prefix_length(ids: list[int], other: list[int]) -> int:
    n = 0
    for a, b in zip(ids, other, strict=False):
        if a != b:
            break
        n += 1
    return n


class PairTokenizer:
    """Tokenizes pairs and predict rows with one tokenizer and chat renderer.

    Args:
        tokenizer: The backbone's tokenizer.
        renderer: Renders conversational rows (the tokenizer's chat template or the data's override).
    """

    def __init__(self, tokenizer: Any, renderer: ChatRenderer) -> None:
        self.tokenizer = tokenizer
        self.renderer = renderer

    @functools.cached_property
    def end_text(self) -> str:
        """The text appended to a completion: EOS, SEP for encoders without one; "" when the tokenizer closes
        every sequence with it itself, or has neither."""
        tok = self.tokenizer
        end = tok.eos_token or tok.sep_token
        if not end:
            return ""
        end_id = tok.convert_tokens_to_ids(end)
        closes = tok("a")["input_ids"][-1:] == [end_id]
        return "" if closes else str(end)

    def ids(self, text: str, templated: bool = False) -> list[int]:
        """Token ids of a text; a chat-templated text gets the tokenizer's special tokens only when the template
        wrote no BOS itself (as SFT tokenizes it)."""
        bos = self.tokenizer.bos_token
        add = not (templated and bos and text.startswith(bos))
        # verbose=False: texts longer than the model's limit are expected here, and cut later by `Limits`
        return list(self.tokenizer(text, add_special_tokens=add, verbose=False)["input_ids"])

    def closed(self, completion: str) -> str:
        end = self.end_text
        return completion if not end or completion.endswith(end) else completion + end

    def pair(self, pair: Pair) -> PairIds:
        if pair.messages:
            prompt_text = self.renderer.text(pair.prompt, generation_prompt=True)
            fulls = [self.renderer.text([*pair.prompt, *side]) for side in (pair.chosen, pair.rejected)]
        else:
            prompt_text = pair.prompt
            fulls = [pair.prompt + self.closed(side) for side in (pair.chosen, pair.rejected)]
        prompt = self.ids(prompt_text, pair.messages)
        chosen, rejected = (self.ids(text, pair.messages) for text in fulls)
        cut = min(common_prefix_length(prompt, chosen), common_prefix_length(prompt, rejected))
        return PairIds(prompt[:cut], chosen[cut:], rejected[cut:])

    def single(self, prompt: str | list[Message], completion: str | list[Message] | None
               ) -> tuple[list[int], list[int]]:
        """(prompt ids, completion ids) of a predict row: a prompt to generate from (completion None) or a text to
        score, tokenized as a training pair's side is."""
        if isinstance(prompt, list):
            prompt_text = self.renderer.text(prompt, generation_prompt=True)
            full = self.renderer.text([*prompt, *completion]) if isinstance(completion, list) else None
        else:
            prompt_text = prompt
            full = None if completion is None else prompt + self.closed(str(completion))
        templated = isinstance(prompt, list)
        ids = self.ids(prompt_text, templated)
        if full is None:
            return ids, []
        whole = self.ids(full, templated)
        cut = common_prefix_length(ids, whole)
        return ids[:cut], whole[cut:]


@dataclass(frozen=True)
class Limits:
    """The length limits of pairs.

    Attributes:
        max_length: Longest prompt + completion; completions are cut at the end to fit.
        max_prompt_length: Longest prompt, cut by `truncation_mode` first; None: prompts are not cut.
        truncation_mode: `keep_end` keeps the end of a long prompt (it leads into the answer; a leading BOS/CLS
            stays), `keep_start` its start.
        lead_ids: Token ids that stay at the start of a prompt cut with `keep_end` (BOS, CLS).
    """

    max_length: int
    max_prompt_length: int | None = None
    truncation_mode: TruncationMode = "keep_end"
    lead_ids: frozenset[int] = frozenset()

    def prompt(self, ids: list[int], limit: int | None) -> list[int]:
        if limit is None or len(ids) <= limit:
            return ids
        if self.truncation_mode == "keep_start":
            return ids[:limit]
        lead = ids[:1] if ids[:1] and ids[0] in self.lead_ids and limit > 1 else []
        return lead + ids[len(ids) - (limit - len(lead)) :]

    def pair(self, ids: PairIds) -> PairIds | None:
        """The pair within the limits, or None when no completion token fits after the prompt (dropped)."""
        prompt = self.prompt(ids.prompt, self.max_prompt_length)
        room = self.max_length - len(prompt)
        if room < 1:
            return None
        chosen, rejected = ids.chosen[:room], ids.rejected[:room]
        cut = len(prompt) < len(ids.prompt) or len(chosen) < len(ids.chosen) or len(rejected) < len(ids.rejected)
        return PairIds(prompt, chosen, rejected, cut)

    def single(self, prompt: list[int], completion: list[int]) -> tuple[list[int], list[int], bool]:
        """A predict row within the limits: never dropped (every row gets a prediction), so a prompt longer than
        the room left is cut by `truncation_mode` to `max_length` whatever `max_prompt_length` says."""
        limit = min(self.max_prompt_length or self.max_length, self.max_length)
        kept = self.prompt(prompt, limit)
        rest = completion[: self.max_length - len(kept)]
        return kept, rest, len(kept) < len(prompt) or len(rest) < len(completion)
