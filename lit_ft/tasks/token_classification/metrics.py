"""Word-level metrics: entity precision / recall / F1 (as seqeval's default mode computes them) and token accuracy.

Both take word-level tag ids, `preds` and `target` of shape (batch, words), with -100 in `target` past a
sentence's end; a predicted id of -1 (a word the model never saw, cut off by truncation) reads as `O`. States
are count tensors summed across processes, so the values are exact under DDP.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric

from lit_ft.task import IGNORE
from lit_ft.tasks.token_classification.schemes import get_entities, split_tag


def word_predictions(token_preds: Tensor, word_ids: Tensor, num_words: int) -> Tensor:
    """Tag id of each word from its first sub-token: (batch, tokens) -> (batch, words); -1 where no sub-token."""
    first = word_ids >= 0
    first[:, 1:] &= word_ids[:, 1:] != word_ids[:, :-1]
    out = torch.full((word_ids.shape[0], num_words), -1, dtype=torch.long, device=word_ids.device)
    rows, cols = first.nonzero(as_tuple=True)
    out[rows, word_ids[rows, cols]] = token_preds[rows, cols].long()
    return out


def _divide(num: float, den: float) -> float:
    return num / den if den else 0.0


def prf(tp: int, pred: int, true: int) -> tuple[float, float, float]:
    """Precision, recall, F1 with seqeval's zero-division rule (0) and its exact floating-point order."""
    p, r = _divide(tp, pred), _divide(tp, true)
    denom = p + r
    return p, r, 2 * p * r / (denom if denom else 1)


class EntityScores(Metric):
    """Entity-level precision, recall and F1, micro-averaged (`precision`, `recall`, `f1`) and per type
    (`f1/PER`, ...), equal to seqeval's default (conlleval) mode on the same tag sequences.

    Args:
        label_names: Tag name of each id.
    """

    full_state_update = False
    higher_is_better = True
    tp: Tensor  # (types,) true positives
    n_pred: Tensor  # (types,) predicted entities
    n_true: Tensor  # (types,) gold entities

    def __init__(self, label_names: list[str], **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.label_names = list(label_names)
        self.types = sorted({split_tag(n)[1] for n in label_names if n != "O"})
        self._type_index = {t: i for i, t in enumerate(self.types)}
        # the keys `compute` returns, which checkpointing can monitor (see lit_ft.monitor)
        parts = ["", *(f"/{t}" for t in self.types)]
        self.output_keys = [f"{m}{part}" for part in parts for m in ("precision", "recall", "f1")]
        for state in ("tp", "n_pred", "n_true"):
            self.add_state(state, torch.zeros(len(self.types), dtype=torch.long), dist_reduce_fx="sum")

    def _tags(self, ids: list[int]) -> list[str]:
        n = len(self.label_names)
        return [self.label_names[i] if 0 <= i < n else "O" for i in ids]

    def update(self, preds: Tensor, target: Tensor) -> None:
        counts = torch.zeros(3, len(self.types), dtype=torch.long)
        for pred_row, gold_row in zip(preds.tolist(), target.tolist(), strict=True):
            keep = [i for i, g in enumerate(gold_row) if g != IGNORE]
            gold = set(get_entities(self._tags([gold_row[i] for i in keep])))
            pred = set(get_entities(self._tags([pred_row[i] for i in keep])))
            for row, entities in enumerate((gold & pred, pred, gold)):
                for e in entities:
                    counts[row, self._type_index[e.type]] += 1
        counts = counts.to(self.tp.device)
        self.tp += counts[0]
        self.n_pred += counts[1]
        self.n_true += counts[2]

    def compute(self) -> dict[str, Tensor]:
        tp, pred, true = self.tp.tolist(), self.n_pred.tolist(), self.n_true.tolist()
        values = dict(zip(("precision", "recall", "f1"), prf(sum(tp), sum(pred), sum(true)), strict=True))
        for i, t in enumerate(self.types):
            for name, v in zip(("precision", "recall", "f1"), prf(tp[i], pred[i], true[i]), strict=True):
                values[f"{name}/{t}"] = v
        return {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}


class TokenAccuracy(Metric):
    """Share of words whose predicted tag equals the gold tag (seqeval's `accuracy_score`)."""

    full_state_update = False
    higher_is_better = True
    correct: Tensor
    total: Tensor

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self.add_state("correct", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")

    def update(self, preds: Tensor, target: Tensor) -> None:
        keep = target != IGNORE
        self.correct += (preds[keep] == target[keep]).sum()
        self.total += keep.sum()

    def compute(self) -> Tensor:
        return torch.tensor(_divide(int(self.correct), int(self.total)), dtype=torch.float64)
