"""From start/end logits to answer spans: per-window n-best search, then the best answer per example.

A window's span score is `start_logit[i] + end_logit[j]` over context tokens with `i <= j < i + max_answer_length`;
its null (no-answer) score is the CLS pair `start_logit[0] + end_logit[0]`. An example's windows are merged
by row (its position in the split): its best span is the best over all windows, its null score the smallest window
null score (as in the reference SQuAD v2 scripts), and with `version_2_with_negative` it answers "" when
`null_score - best_span_score > null_threshold`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch

from lit_ft.rows import ROW

NO_SPAN = float("-inf")


class WindowSpans(NamedTuple):
    """The top-k spans of each window; scores of missing spans are -inf. Shapes (windows, k) except `null`."""

    score: torch.Tensor
    char_start: torch.Tensor
    char_end: torch.Tensor  # exclusive
    null: torch.Tensor  # (windows,)


def window_spans(
    start_logits: torch.Tensor, end_logits: torch.Tensor, offsets: torch.Tensor, max_answer_length: int, k: int = 1
) -> WindowSpans:
    """The k best context spans of each window.

    Args:
        start_logits: (windows, seq) start scores.
        end_logits: (windows, seq) end scores.
        offsets: (windows, seq, 2) character offsets of context tokens in their context; -1 elsewhere.
        max_answer_length: Longest answer in tokens.
        k: Spans kept per window.
    """
    start_logits, end_logits = start_logits.float(), end_logits.float()
    seq = start_logits.shape[1]
    context = offsets[..., 0] >= 0  # (windows, seq)
    pos = torch.arange(seq, device=start_logits.device)
    length = pos[None, :] - pos[:, None]  # (seq, seq): j - i
    allowed = (length >= 0) & (length < max_answer_length)
    allowed = allowed[None] & context[:, :, None] & context[:, None, :]  # (windows, seq, seq)
    scores = (start_logits[:, :, None] + end_logits[:, None, :]).masked_fill(~allowed, NO_SPAN)
    top, flat = scores.flatten(1).topk(min(k, seq * seq), dim=1)  # (windows, k)
    # equal scores in a fixed order (earlier span first), so any k gives the same best span
    flat, perm = flat.sort(dim=1)
    top, perm = top.gather(1, perm).sort(dim=1, descending=True, stable=True)
    flat = flat.gather(1, perm)
    starts, ends = flat // seq, flat % seq
    char_start = offsets[..., 0].gather(1, starts)
    char_end = offsets[..., 1].gather(1, ends)
    missing = torch.isinf(top)
    return WindowSpans(
        top, char_start.masked_fill(missing, -1), char_end.masked_fill(missing, -1),
        start_logits[:, 0] + end_logits[:, 0],
    )


def says_no_answer(best_score: float, null_score: float, version_2_with_negative: bool, null_threshold: float) -> bool:
    """Whether an example's answer is "" : no span at all, or (v2) the null score beats the best span enough."""
    if best_score == NO_SPAN:
        return True
    return version_2_with_negative and null_score - best_score > null_threshold


def merge_windows(records: list[dict[str, Any]], n_best: int) -> dict[int, dict[str, Any]]:
    """Per row (its position in the split, `ROW`; never by id, which may repeat): the n-best distinct spans over
    all its windows and the smallest null score, in row order.

    Args:
        records: Window records with `ROW`, `id`, `null_score` and `candidates` (`text`, `score`, `start`, `end`).
        n_best: Spans kept per example.
    """
    merged: dict[int, dict[str, Any]] = {}
    for record in sorted(records, key=lambda r: r[ROW]):
        entry = merged.setdefault(record[ROW], {"id": record["id"], "null_score": record["null_score"], "spans": {}})
        entry["null_score"] = min(entry["null_score"], record["null_score"])
        for cand in record["candidates"]:
            key = (cand["start"], cand["end"])  # overlapping windows find the same span twice
            if key not in entry["spans"] or entry["spans"][key]["score"] < cand["score"]:
                entry["spans"][key] = cand
    for entry in merged.values():
        entry["n_best"] = sorted(entry.pop("spans").values(), key=lambda c: -c["score"])[:n_best]
    return merged


def choose_answers(
    merged: dict[int, dict[str, Any]], version_2_with_negative: bool, null_threshold: float
) -> list[dict[str, Any]]:
    """One record per row, in row order: `id`, `answer` ("" for no answer), `score`, `null_score`, `n_best`, and
    the row's `ROW`."""
    out = []
    for row, entry in sorted(merged.items()):
        best = entry["n_best"][0] if entry["n_best"] else None
        best_score = best["score"] if best else NO_SPAN
        empty = says_no_answer(best_score, entry["null_score"], version_2_with_negative, null_threshold)
        out.append({
            "id": entry["id"],
            "answer": "" if empty or best is None else best["text"],
            "score": None if best is None else best_score,
            "null_score": entry["null_score"],
            "n_best": entry["n_best"],
            ROW: row,
        })
    return out
