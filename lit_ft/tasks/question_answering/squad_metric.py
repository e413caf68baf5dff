"""SQuAD exact match and F1, computed per example after decoding, as a DDP-syncable torchmetrics Metric.

The string scoring follows the official SQuAD evaluation scripts: answers are normalised (lowercase, no
punctuation, no articles a/an/the, single spaces), F1 is over normalised word tokens, and each prediction
scores the maximum over its gold answers. Scores are percentages (0-100), as the official scripts print.
With `version_2` the v2.0 rules apply: gold answers that normalise to nothing are dropped, an unanswerable
question's gold is "", and the HasAns / NoAns splits are reported as well.
"""

from __future__ import annotations

import collections
import re
import string
from typing import Any, Protocol

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lit_ft.tasks.question_answering.decode import says_no_answer

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


class References(Protocol):
    """What the metric reads to turn char spans into text and score it (rows of one split)."""

    contexts: list[str]
    answers: list[list[str]]
    questions: list[str]
    ids: list[str]


def normalize_answer(text: str) -> str:
    text = "".join(ch for ch in text.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", text).split())


def exact_score(gold: str, pred: str) -> float:
    return float(normalize_answer(gold) == normalize_answer(pred))


def f1_score(gold: str, pred: str, version_2: bool) -> float:
    gold_tokens, pred_tokens = normalize_answer(gold).split(), normalize_answer(pred).split()
    if version_2 and (not gold_tokens or not pred_tokens):
        return float(gold_tokens == pred_tokens)  # v2.0: no answer is right only when both are empty
    common = collections.Counter(gold_tokens) & collections.Counter(pred_tokens)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def score_example(golds: list[str], pred: str, version_2: bool) -> tuple[float, float]:
    """(exact, f1) of one prediction, each the max over the gold answers."""
    if version_2:
        golds = [g for g in golds if normalize_answer(g)] or [""]
    elif not golds:
        return 0.0, 0.0
    return max(exact_score(g, pred) for g in golds), max(f1_score(g, pred, version_2) for g in golds)


class SquadMetric(Metric):
    """Exact match and F1 over examples, from the best span of each window.

    States are one row per window (example index in its split, best span score, char start, char end, null
    score), concatenated across processes; `compute` merges an example's windows and cuts the answer text from
    the split's contexts, which every process holds (see `update`).

    Args:
        version_2_with_negative: SQuAD v2.0 rules: a "no answer" option and HasAns / NoAns scores.
        null_threshold: Answer "" when `null_score - best_span_score` exceeds this (v2 only).
        keep_samples: Decoded examples kept from the last `compute` for display.
    """

    full_state_update = False
    higher_is_better = True
    output_keys = ("exact_match", "f1")
    """Keys `compute` always returns (the v2.0 HasAns / NoAns ones only when the split has such questions)."""

    def __init__(self, version_2_with_negative: bool = False, null_threshold: float = 0.0, keep_samples: int = 5,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.version_2 = version_2_with_negative
        self.null_threshold = null_threshold
        self.keep_samples = keep_samples
        self.references: References | None = None
        self.last_samples: list[dict[str, Any]] = []
        for name in ("example", "score", "start", "end", "null"):
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, example: torch.Tensor, score: torch.Tensor, start: torch.Tensor, end: torch.Tensor,
               null: torch.Tensor, references: References) -> None:
        """Add windows: (windows,) tensors of example index, best span score, char start/end, null score."""
        self.references = references
        for name, value in (("example", example), ("score", score), ("start", start), ("end", end), ("null", null)):
            getattr(self, name).append(value.detach().to(self.device))

    def _best_per_example(self) -> dict[int, tuple[float, int, int, float]]:
        if not self.example:
            return {}
        columns = [dim_zero_cat(getattr(self, n)).tolist() for n in ("example", "score", "start", "end", "null")]
        best: dict[int, tuple[float, int, int, float]] = {}
        for ex, score, start, end, null in zip(*columns, strict=True):
            old = best.get(ex)
            if old is None:
                best[ex] = (score, start, end, null)
            else:
                span = (score, start, end) if score > old[0] else old[:3]
                best[ex] = (*span, min(null, old[3]))
        return best

    def predictions(self) -> dict[int, str]:
        """Decoded answer text per example index of the windows seen so far."""
        refs = self.references
        out = {}
        for ex, (score, start, end, null) in sorted(self._best_per_example().items()):
            empty = says_no_answer(score, null, self.version_2, self.null_threshold)
            out[ex] = "" if empty or refs is None else refs.contexts[ex][start:end]
        return out

    def compute(self) -> dict[str, torch.Tensor]:
        preds = self.predictions()
        refs = self.references
        rows = {"all": [], "has_ans": [], "no_ans": []}  # type: dict[str, list[tuple[float, float]]]
        for ex, pred in preds.items():
            golds = refs.answers[ex] if refs is not None else []
            scores = score_example(golds, pred, self.version_2)
            rows["all"].append(scores)
            rows["has_ans" if golds else "no_ans"].append(scores)  # as the official v2.0 script splits
        if refs is not None:
            self.last_samples = [{"id": refs.ids[ex], "question": refs.questions[ex], "gold": refs.answers[ex],
                                  "prediction": pred} for ex, pred in list(preds.items())[: self.keep_samples]]
        result = _averages(rows["all"], "")
        if self.version_2:
            for part in ("has_ans", "no_ans"):
                if rows[part]:
                    result.update(_averages(rows[part], f"{part}_"))
        return result


def _averages(rows: list[tuple[float, float]], prefix: str) -> dict[str, torch.Tensor]:
    n = max(len(rows), 1)
    return {f"{prefix}exact_match": torch.tensor(100.0 * sum(r[0] for r in rows) / n),
            f"{prefix}f1": torch.tensor(100.0 * sum(r[1] for r in rows) / n)}
