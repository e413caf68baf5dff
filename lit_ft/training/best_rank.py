"""The best checkpoints: Lightning's top-k ranking, with ties on the monitored value going to the lower `val/loss`.

Lightning keeps the first checkpoint that reached a value: on a small or easy validation set, whose accuracy
saturates at 1.0 within an epoch, that is the least trained model. Here equal monitored values are ranked by
`TIE_BREAK` (lower wins), and only a full tie by age (earlier wins). The `TIE_BREAK` value of each kept checkpoint,
and how many validations reached the best value, are part of the callback's state, so a resumed fit ranks as the
uninterrupted one would.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info

from lit_ft.adapters.lightning import checkpoint_filepath, remove_replaced, save_checkpoint

TIE_BREAK = "val/loss"  # what decides between checkpoints whose monitored values are equal: the lower wins


class RankedCheckpoint(ModelCheckpoint):
    """`ModelCheckpoint` whose best and k-th best checkpoints are chosen by (monitored value, `TIE_BREAK`).

    Args:
        *args: `ModelCheckpoint` arguments.
        **kwargs: `ModelCheckpoint` arguments.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.tie_losses: dict[str, float] = {}  # the TIE_BREAK value of each kept best checkpoint, by path
        self.ties = 0  # validations that reached the best monitored value so far
        self._candidates: dict[str, torch.Tensor] = {}  # the logged values of the validation being ranked

    @property
    def tie_break(self) -> str | None:
        """The logged key that decides between equal monitored values (None when the monitor is that key)."""
        return None if self.monitor == TIE_BREAK else TIE_BREAK

    def _save_monitor_checkpoint(self, trainer: Trainer, monitor_candidates: dict[str, torch.Tensor]) -> None:
        self._candidates = monitor_candidates
        self._count_ties(monitor_candidates.get(str(self.monitor)))
        super()._save_monitor_checkpoint(trainer, monitor_candidates)

    def _count_ties(self, current: torch.Tensor | None) -> None:
        value = None if current is None else float(current)  # floats: a resumed score may sit on another device
        if value is None or math.isnan(value):
            return
        best = None if self.best_model_score is None else float(self.best_model_score)
        if best is None or (value < best if self.mode == "min" else value > best):
            self.ties = 1
        elif value == best:
            self.ties += 1

    def _tie_value(self, candidates: dict[str, torch.Tensor]) -> float | None:
        value = candidates.get(TIE_BREAK) if self.tie_break else None
        return None if value is None else float(value)

    def check_monitor_top_k(self, trainer: Trainer, current: torch.Tensor | None = None) -> bool:
        """Lightning's rule (strictly better than the k-th best), or equal to it with a lower `TIE_BREAK` value."""
        if super().check_monitor_top_k(trainer, current):
            return True
        kth = self.best_k_models.get(self.kth_best_model_path)
        if current is None or kth is None or self.save_top_k < 1:
            return False  # the same on every rank: no collective decision needed
        mine, theirs = self._tie_value(self._candidates), self.tie_losses.get(self.kth_best_model_path)
        wins = float(current) == float(kth) and mine is not None and theirs is not None and mine < theirs
        return bool(trainer.strategy.reduce_boolean_decision(wins))

    def _rank(self, path: str) -> tuple[float, float]:
        """Sort key of a kept checkpoint, best first: the monitored value in its direction, then `TIE_BREAK`
        (unknown, as for checkpoints kept by an earlier lit_ft, first: they were the earlier ones)."""
        score = float(self.best_k_models[path])
        loss = self.tie_losses.get(path)
        tie = -math.inf if loss is None else math.inf if math.isnan(loss) else loss
        return (-score if self.mode == "max" else score), tie

    def _update_best_and_save(self, current: torch.Tensor, trainer: Trainer,
                              monitor_candidates: dict[str, torch.Tensor]) -> None:
        """Lightning's top-k bookkeeping with `_rank` choosing the best and the k-th (Lightning breaks ties by
        dictionary order, the earliest first)."""
        k = len(self.best_k_models) + 1 if self.save_top_k == -1 else self.save_top_k
        dropped = self.kth_best_model_path if len(self.best_k_models) == k and k > 0 else None
        if dropped:
            self.best_k_models.pop(dropped)
            self.tie_losses.pop(dropped, None)
        if torch.isnan(current):  # never best, as Lightning does
            current = torch.tensor(float("inf" if self.mode == "min" else "-inf"), device=current.device)
        filepath = checkpoint_filepath(self, trainer, monitor_candidates, dropped)
        self.current_score = current
        self.best_k_models[filepath] = current
        loss = self._tie_value(monitor_candidates)
        if loss is not None:
            self.tie_losses[filepath] = loss
        ranked = sorted(self.best_k_models, key=self._rank)  # stable: the earlier of two full ties first
        if len(self.best_k_models) == k:
            self.kth_best_model_path = ranked[-1]
            self.kth_value = self.best_k_models[ranked[-1]]
        self.best_model_path, self.best_model_score = ranked[0], self.best_k_models[ranked[0]]
        if self.verbose:
            best = float(self.best_model_score)
            rank_zero_info(f"Epoch {int(monitor_candidates['epoch'])}, global step {trainer.global_step}: "
                           f"{self.monitor!r} reached {float(current):0.5f} (best {best:0.5f}), saving model to "
                           f"{filepath!r} as top {k}")
        save_checkpoint(self, trainer, filepath)
        if dropped:
            remove_replaced(self, trainer, dropped, filepath)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "tie_losses": dict(self.tie_losses), "ties": self.ties}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        self.tie_losses = dict(state_dict.get("tie_losses") or {})  # none in checkpoints of an earlier lit_ft
        self.ties = int(state_dict.get("ties") or 0)
