"""Metrics of generated text (ROUGE, sacreBLEU, chrF, exact match) as DDP-safe torchmetrics objects.

Each metric wraps its reference package's own scorer, so a value equals what that package reports on the same
strings, and keeps only summed tensor states (no strings), so it syncs across processes with a plain sum:

- `rouge1`, `rouge2`, `rougeL`, `rougeLsum`: the mean over examples of the `rouge-score` F-measure (0-1), with
  Porter stemming by default; several references per example score as the best one (`score_multi`).
- `bleu`, `chrf`: `sacrebleu`'s corpus BLEU (13a tokenization) and chrF (char order 6, beta 2) on its 0-100 scale,
  from the summed per-sentence statistics that `corpus_score` itself sums.
- `exact_match`: the share of predictions equal to a reference after collapsing whitespace (0-1).

torchmetrics' own ROUGEScore needs NLTK's punkt download for rougeLsum and its CHRFScore differs from sacrebleu's
corpus chrF, hence these wrappers.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import torch
from torchmetrics import Metric, MetricCollection

from lit_ft.adapters.sacrebleu import score_from_stats, sentence_stats
from lit_ft.errors import UserError
from lit_ft.rows import ROW

TEXT_METRICS = ("rouge1", "rouge2", "rougeL", "rougeLsum", "bleu", "chrf", "exact_match")
References = Sequence[str] | Sequence[Sequence[str]]
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def sentence_lines(text: str) -> str:
    """Text with one sentence per line, as rougeLsum expects; text that already has newlines is kept as it is."""
    return text if "\n" in text else "\n".join(s for s in _SENTENCE_END.split(text.strip()) if s)


def _as_lists(predictions: Sequence[str], references: References) -> list[list[str]]:
    if len(predictions) != len(references):
        raise UserError(f"got {len(predictions)} predictions but {len(references)} references; give one each")
    return [[r] if isinstance(r, str) else list(r) for r in references]


class Rouge(Metric):
    """Mean `rouge-score` F-measure of one ROUGE type over all examples.

    Args:
        rouge_type: `rouge1`, `rouge2`, `rougeL` or `rougeLsum` (summary-level LCS over newline-split
            sentences; texts without newlines are split after `.`, `!` and `?`).
        use_stemmer: Porter-stem tokens before matching (as most summarization papers report).
    """

    full_state_update = False
    higher_is_better = True
    total: torch.Tensor
    count: torch.Tensor

    def __init__(self, rouge_type: str = "rougeL", use_stemmer: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from rouge_score.rouge_scorer import RougeScorer

        self.rouge_type = rouge_type
        self.scorer = RougeScorer([rouge_type], use_stemmer=use_stemmer)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, predictions: Sequence[str], references: References) -> None:
        prep = sentence_lines if self.rouge_type == "rougeLsum" else str
        for pred, refs in zip(predictions, _as_lists(predictions, references), strict=True):
            score = self.scorer.score_multi([prep(r) for r in refs], prep(pred))[self.rouge_type]
            self.total += score.fmeasure
        self.count += len(predictions)

    def compute(self) -> torch.Tensor:
        return (self.total / self.count.clamp(min=1)).float()


class SacreScore(Metric):
    """sacreBLEU corpus BLEU or chrF, from the per-sentence sufficient statistics sacrebleu sums itself.

    Args:
        kind: `bleu` (13a tokenization, exponential smoothing) or `chrf` (chrF2, char order 6).
    """

    full_state_update = False
    higher_is_better = True
    stats: torch.Tensor
    scorer: Any

    def __init__(self, kind: str = "bleu", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        from sacrebleu.metrics import BLEU, CHRF

        self.kind = kind
        self.scorer = BLEU() if kind == "bleu" else CHRF()
        if kind == "bleu":  # sys_len, ref_len, then matches and totals per n-gram order
            size = 2 + 2 * self.scorer.max_ngram_order
        else:  # hyp, ref and match counts per character and word n-gram order
            size = 3 * (self.scorer.char_order + self.scorer.word_order)
        self.add_state("stats", torch.zeros(size, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, predictions: Sequence[str], references: References) -> None:
        for pred, refs in zip(predictions, _as_lists(predictions, references), strict=True):
            # one sentence at a time: the number of references may differ between examples
            self.stats += torch.tensor(sentence_stats(self.scorer, pred, refs), dtype=torch.float64)

    def compute(self) -> torch.Tensor:
        stats = [int(v) for v in self.stats.round().tolist()]
        return torch.tensor(score_from_stats(self.scorer, stats), dtype=torch.float32)


class ExactMatch(Metric):
    """Share of predictions equal to one of their references, with runs of whitespace collapsed."""

    full_state_update = False
    higher_is_better = True
    hits: torch.Tensor
    count: torch.Tensor

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.add_state("hits", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, predictions: Sequence[str], references: References) -> None:
        for pred, refs in zip(predictions, _as_lists(predictions, references), strict=True):
            self.hits += int(" ".join(pred.split()) in {" ".join(r.split()) for r in refs})
        self.count += len(predictions)

    def compute(self) -> torch.Tensor:
        return self.hits.float() / self.count.clamp(min=1)


def text_metric(name: str, use_stemmer: bool = True) -> Metric:
    """One metric of `TEXT_METRICS` by name."""
    if name.startswith("rouge") and name in TEXT_METRICS:
        return Rouge(name, use_stemmer=use_stemmer)
    if name in ("bleu", "chrf"):
        return SacreScore(name)
    if name == "exact_match":
        return ExactMatch()
    raise UserError(f"unknown text metric '{name}'; choose from {list(TEXT_METRICS)}")


def text_metrics(names: Sequence[str], use_stemmer: bool = True) -> GenerationMetrics:
    """A collection whose `.update(predictions, references)` feeds every named metric (and that keeps samples).

    Args:
        names: Metric names from `TEXT_METRICS`.
        use_stemmer: Porter-stem tokens in the ROUGE metrics.
    """
    if not names:
        raise UserError(f"no text metrics named; choose from {list(TEXT_METRICS)}")
    return GenerationMetrics({n: text_metric(n, use_stemmer) for n in names})


class GenerationMetrics(MetricCollection):
    """A task's metrics plus the generated samples of the epoch (`keep`), which `reset` clears with them.

    Keeping the samples in the collection ties them to its epoch: the sanity check's reset drops the untrained
    model's generations, so the first epoch shows its own.
    """

    def __init__(self, metrics: dict[str, Metric | MetricCollection]) -> None:
        super().__init__(metrics, compute_groups=False)  # equal states after one batch must not be merged
        self.samples: list[dict[str, Any]] = []

    def keep(self, rows: Sequence[dict[str, Any]], limit: int) -> None:
        """Keep the `limit` sample rows first in the split (by their `ROW`; eval batches come in length order), in
        input order."""
        self.samples = sorted([*self.samples, *rows], key=lambda r: r.get(ROW, 0))[:limit]

    def reset(self) -> None:
        super().reset()
        self.samples.clear()
