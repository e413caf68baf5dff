"""One encoded example shown as the model sees it, for `lit_ft inspect-data` (`TaskDataModule.show_example`).

Text is decoded with the run's own tokenizer, special tokens included. Tokens marked `[[...]]` are the ones the
task singles out: those with a loss (labels != -100) for language modelling, the answer span for QA.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from transformers import PreTrainedTokenizerBase

from lit_ft.task import IGNORE

OPEN, CLOSE = "[[", "]]"
INDENT = "    "


def field(name: str, text: str) -> list[str]:
    """`name: text`, a multi-line text indented under its name."""
    first, *rest = text.split("\n") or [""]
    return [f"{name}: {first}", *(INDENT + line for line in rest)]


def decode(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int]) -> str:
    return str(tokenizer.decode(list(ids), skip_special_tokens=False, clean_up_tokenization_spaces=False))


def marked(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int], keep: Sequence[bool]) -> str:
    """The decoded ids with each run of kept tokens wrapped in `[[...]]`."""
    parts, start = [], 0
    for i in range(1, len(ids) + 1):
        if i == len(ids) or keep[i] != keep[start]:
            text = decode(tokenizer, ids[start:i])
            parts.append(_space_before(tokenizer, ids, start) + (f"{OPEN}{text}{CLOSE}" if keep[start] else text))
            start = i
    return "".join(parts)


def _space_before(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int], at: int) -> str:
    """" " where decoding puts a space between token `at - 1` and token `at` that decoding each alone drops
    (WordPiece, SentencePiece); byte-level BPE tokens carry their own spaces."""
    if at == 0:
        return ""
    left, right = decode(tokenizer, ids[at - 1 : at]), decode(tokenizer, ids[at : at + 1])
    return " " if decode(tokenizer, ids[at - 1 : at + 1]) == f"{left} {right}" else ""


def tagged(tokenizer: PreTrainedTokenizerBase, ids: Sequence[int], labels: Sequence[int],
           names: Sequence[str] | None) -> str:
    """Each token, followed by `/NAME` where it carries a label (token tagging)."""
    words = []
    for token, label in zip(ids, labels, strict=True):
        text = str(tokenizer.convert_ids_to_tokens(int(token)))
        words.append(text if label == IGNORE else f"{text}/{_name(label, names)}")
    return " ".join(words)


def _name(value: Any, names: Sequence[str] | None) -> str:
    if isinstance(value, int) and names and 0 <= value < len(names):
        return str(names[value])
    return str(value)


def default_view(feature: dict[str, Any], tokenizer: PreTrainedTokenizerBase,
                 names: Sequence[str] | None) -> list[str]:
    """The base view of an encoded example (see `TaskDataModule.show_example`)."""
    ids, labels = feature["input_ids"], feature.get("labels")
    if ids and isinstance(ids[0], list):
        return _choices(ids, labels, tokenizer)
    if isinstance(labels, list) and len(labels) == len(ids) and all(isinstance(v, int) for v in labels):
        trained = [v != IGNORE for v in labels]
        if all(v == t for v, t, k in zip(labels, ids, trained, strict=True) if k):  # labels are the next tokens
            return field(f"input ({sum(trained)} of {len(ids)} tokens with a loss in {OPEN}{CLOSE})",
                         marked(tokenizer, ids, trained))
        return field("tokens/labels", tagged(tokenizer, ids, labels, names))
    lines = field("input", decode(tokenizer, ids))
    if isinstance(labels, list) and labels and all(isinstance(v, float) for v in labels):  # multi-hot
        return [*lines, f"labels: {', '.join(_name(i, names) for i, v in enumerate(labels) if v) or '(none)'}"]
    if isinstance(labels, list):
        return [*lines, *field("target (with a loss)", decode(tokenizer, [v for v in labels if v != IGNORE]))]
    return lines if labels is None else [*lines, f"label: {_name(labels, names)}"]


def _choices(sequences: list[list[int]], label: Any, tokenizer: PreTrainedTokenizerBase) -> list[str]:
    lines = []
    for i, ids in enumerate(sequences):
        lines += field(f"choice {i}{' (label)' if label == i else ''}", decode(tokenizer, ids))
    return lines
