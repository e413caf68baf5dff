"""sacrebleu's private names that lit_ft uses, each with the public API it waits for (`ACCESSES`, checked by
`tests/test_library_internals.py`). sacrebleu is imported by the caller (the generation metrics)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from lit_ft.adapters.library_access import Access

_WAIT = "none yet: sufficient statistics per sentence, summed across batches and processes, then scored"
ACCESSES = [
    Access("sacrebleu.metrics.BLEU", "_extract_corpus_statistics", "method", _WAIT, "text_metrics",
           ("self", "hypotheses", "references")),
    Access("sacrebleu.metrics.BLEU", "_compute_score_from_stats", "method", _WAIT, "text_metrics",
           ("self", "stats")),
    Access("sacrebleu.metrics.CHRF", "_extract_corpus_statistics", "method", _WAIT, "text_metrics",
           ("self", "hypotheses", "references")),
    Access("sacrebleu.metrics.CHRF", "_compute_score_from_stats", "method", _WAIT, "text_metrics",
           ("self", "stats")),
]


def sentence_stats(scorer: Any, hypothesis: str, references: Sequence[str]) -> list[int]:
    """The sufficient statistics of one hypothesis against its references."""
    return list(scorer._extract_corpus_statistics([hypothesis], [[r] for r in references])[0])


def score_from_stats(scorer: Any, stats: list[int]) -> float:
    """The corpus score of summed sufficient statistics."""
    return float(scorer._compute_score_from_stats(stats).score)
