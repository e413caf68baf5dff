"""Checkpointing and early stopping on the task's primary metric, and finding a run's best checkpoint later."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import EarlyStopping

from lit_ft.adapters.lightning import (
    can_stop_early,
    last_checkpoint_saved,
    monitor_candidates,
    record_saved,
    saves_on_train_epoch_end,
    skips_saving,
)
from lit_ft.domains import AllOrCount, NonNegativeInt
from lit_ft.errors import UserError
from lit_ft.io import clean_stale_temps, commit, remove_path, temp_name, write_text
from lit_ft.no_room import NoRoomError, file_size, no_room_cause, no_room_error
from lit_ft.training.best_rank import RankedCheckpoint
from lit_ft.training.nan_guard import NonFiniteError, non_finite_parameters
from lit_ft.training.resume import (
    flush_and_count_rows,
    logger_versions,
    reposition_train_loader,
    restore_rng,
    rng_states,
    truncate_csv_logs,
)
from lit_ft.training.wandb_resume import skip_replayed_rows

POINTER = "best.json"


def _task_monitor(pl_module: LightningModule, monitor: str | None) -> tuple[str, str]:
    """The task's primary metric and its direction, or the direction of an explicitly given `monitor`."""
    if monitor is None:
        primary = getattr(pl_module, "monitor", None)
        if not callable(primary):
            raise UserError("set `monitor` explicitly: the model does not name a primary metric")
        name, mode = primary()
        return str(name), str(mode)
    mode_of = getattr(pl_module, "monitor_mode", None)
    if not callable(mode_of):
        raise UserError(f"set `mode` (min or max) for monitor '{monitor}': the model does not know its direction")
    return monitor, str(mode_of(monitor))


class TaskCheckpoint(RankedCheckpoint):
    """ModelCheckpoint that watches the task's primary metric unless `monitor` is given, and keeps runs resumable.

    The direction (`mode`) is the metric's own (`higher_is_better`) unless given. A fit always ends validated:
    when no validation ran after the last optimizer step (a `max_steps` fit shorter than an epoch,
    `check_val_every_n_epoch` skipping the last epoch, ...), the final model is validated before the last
    checkpoint is written, so the best checkpoint is scored and includes the final weights.

    Ties on the monitored value go to the lower validation loss (`val/loss`; the earlier checkpoint when that ties
    too): a small validation set saturates accuracy at 1.0 within an epoch, and the first checkpoint to reach it is
    the least trained one. `best.json` records the rule (`tie_break`) and how many validations reached the best
    score (`ties`: more than 1 when the loss decided), which `lit_ft report` states.

    The best checkpoints hold the weights only (`save_weights_only_best`; about a third of a full one with
    AdamW's two moments), enough for validate / test / predict / export; `last` keeps the optimizer,
    scheduler and loop state that `fit --ckpt_path last` resumes from.

    Checkpoints go to `<trainer.default_root_dir>/checkpoints` unless `dirpath` is set. The best `save_top_k`
    are chosen at each validation. `last.ckpt` is the latest state, whatever the metric did: it is written after
    every validation and epoch, and every `every_n_train_steps` optimizer steps or `train_time_interval`
    between them, with the RNG states and the data order's position, so `fit --ckpt_path last` continues
    exactly where it stopped. Every file is written to a temporary name and renamed. After every save it
    writes `best.json` (paths relative to itself, score, metric, logger versions), which `--ckpt_path best`,
    `--ckpt_path last` and `lit_ft export RUN_DIR` read in later processes.

    Args:
        dirpath: Checkpoint directory (default `<trainer.default_root_dir>/checkpoints`).
        monitor: Logged key to watch (`val/<metric>`); default the task's primary metric.
        mode: `min` or `max`; default the monitored metric's own direction.
        save_last: Keep `last.ckpt` (needed by `--ckpt_path last`).
        save_top_k: Best checkpoints kept.
        validate_at_end: Validate the final model when no validation ran after the last optimizer step.
        save_weights_only_best: Save the monitored (best) checkpoints without optimizer state.
        every_n_train_steps: Also write `last.ckpt` every this many optimizer steps (0: only at validation/epoch end).
        train_time_interval: Also write `last.ckpt` when this much time has passed since the previous save
            (for example `0:30:00`).
        **kwargs: Further `ModelCheckpoint` arguments.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        monitor: str | None = None,
        mode: Literal["min", "max"] | None = None,
        save_last: bool | None = True,
        save_top_k: AllOrCount = 1,
        validate_at_end: bool = True,
        save_weights_only_best: bool = True,
        every_n_train_steps: NonNegativeInt | None = None,
        train_time_interval: timedelta | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(dirpath=dirpath, monitor=monitor, mode=mode or "min", save_last=save_last,
                         save_top_k=save_top_k, **kwargs)
        if every_n_train_steps is not None and every_n_train_steps < 0:
            raise UserError(f"checkpoint.every_n_train_steps must be >= 0, got {every_n_train_steps}")
        self._given_monitor = monitor
        self._auto_mode = mode is None
        self.validate_at_end = validate_at_end
        self.last_validated_step = -1
        self.save_weights_only_best = save_weights_only_best
        self.last_every_n_steps = every_n_train_steps or 0
        self.last_every_seconds = None if train_time_interval is None else train_time_interval.total_seconds()
        self._last_resume_save = time.monotonic()
        self._step_at_batch_start = -1
        self._between_batches = False
        self._pending_rng: list[dict[str, Any]] | None = None
        self._last_saves = 0  # count of `last` saves, to see whether Lightning's hook wrote one
        self.last_saved_step = -1  # the global step `last.ckpt` holds (-1: none written or resumed from)

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.join(trainer.default_root_dir, "checkpoints")
        self.dirpath = os.path.abspath(self.dirpath)
        if self._given_monitor is None or self._auto_mode:
            self.monitor, mode = _task_monitor(pl_module, self._given_monitor)
            if self._auto_mode:
                inf = torch.tensor(torch.inf)
                self.kth_value, self.mode = (inf, "min") if mode == "min" else (-inf, "max")
        if trainer.is_global_zero:
            clean_stale_temps(self.dirpath)
            clean_stale_temps(trainer.default_root_dir)  # a killed export's or prediction writer's temporaries
        super().setup(trainer, pl_module, stage)

    # ---- when to save ----------------------------------------------------------------------------
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._last_resume_save = time.monotonic()
        if trainer.ckpt_path:
            record_saved(self, trainer.global_step)  # the state just loaded is on disk already
            self.last_saved_step = trainer.global_step
            reposition_train_loader(trainer)
        if self._pending_rng is not None:
            restore_rng(self._pending_rng, trainer.global_rank)  # after the loaders started, as when it was saved
            self._pending_rng = None

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        """Step and time saves of `last`, taken between two optimizer steps (after the previous one's logging)."""
        step, previous = trainer.global_step, self._step_at_batch_start
        self._step_at_batch_start = step
        if batch_idx == 0 or step == previous or skips_saving(self, trainer):
            return  # epoch starts are covered by the epoch-end save; mid-accumulation is no place to stop
        due = self.last_every_n_steps > 0 and step % self.last_every_n_steps == 0
        if self.last_every_seconds is not None:
            elapsed = time.monotonic() - self._last_resume_save >= self.last_every_seconds
            due = due or bool(trainer.strategy.broadcast(elapsed))
        if due:
            self._between_batches = True
            try:
                self._save_last_checkpoint(trainer, monitor_candidates(self, trainer))
            finally:
                self._between_batches = False

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        unvalidated = self.last_validated_step != trainer.global_step
        if self.validate_at_end and unvalidated and _fit_ends_after_this_epoch(trainer):
            _validate_now(trainer, self.last_validated_step)
        before = self._last_saves
        super().on_train_epoch_end(trainer, pl_module)
        if saves_on_train_epoch_end(self, trainer) and self._last_saves == before:
            self._ensure_last(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.sanity_checking:
            self.last_validated_step = trainer.global_step
        before = self._last_saves
        super().on_validation_end(trainer, pl_module)
        if not saves_on_train_epoch_end(self, trainer) and self._last_saves == before:
            self._ensure_last(trainer)

    def _ensure_last(self, trainer: Trainer) -> None:
        """Lightning writes `last` only together with a top-k save: write it after every validation/epoch."""
        if not (trainer.sanity_checking or trainer.state.fn != "fit" or bool(getattr(trainer, "fast_dev_run", False))):
            self._save_last_checkpoint(trainer, monitor_candidates(self, trainer))

    def _save_last_checkpoint(self, trainer: Trainer, monitor_candidates: dict[str, torch.Tensor]) -> None:
        super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_saves += 1
        self._last_resume_save = time.monotonic()
        if self.save_last:
            self.last_saved_step = trainer.global_step

    def save_last_now(self, trainer: Trainer) -> str | None:
        """Write `last` for a fit stopping at the end of a step (SIGTERM, Ctrl-C) unless it holds that step
        already; returns the path of `last`, or None when there is none to resume from."""
        if self.save_last and 0 < trainer.global_step != self.last_saved_step:
            self._save_last_checkpoint(trainer, monitor_candidates(self, trainer))
        return self.saved_last()

    def saved_last(self) -> str | None:
        """The path of `last.ckpt` when this fit wrote or resumed from one."""
        path = self.last_model_path
        return path if self.last_saved_step >= 0 and path and os.path.isfile(path) else None

    def _update_best_and_save(self, current: torch.Tensor, trainer: Trainer,
                              monitor_candidates: dict[str, torch.Tensor]) -> None:
        bad = non_finite_parameters(trainer.lightning_module)
        if bad:
            raise NonFiniteError(
                f"not saving a checkpoint at step {trainer.global_step}: parameter '{bad}' holds NaN or inf; "
                "lower model.learning_rate or use 32-true precision"
            )
        super()._update_best_and_save(current, trainer, monitor_candidates)

    # ---- how to save ---------------------------------------------------------------------------
    def _save_checkpoint(self, trainer: Trainer, filepath: str) -> None:
        """Write to a temporary name in the checkpoint directory, then rename: a kill leaves the previous file."""
        # Lightning sets last_model_path before saving `last`; every other file here is a best (top-k) one
        weights_only = self.save_weights_only or (self.save_weights_only_best and filepath != self.last_model_path)
        tmp = trainer.strategy.broadcast(temp_name(filepath))
        try:
            trainer.save_checkpoint(tmp, weights_only)
            if trainer.is_global_zero:
                commit(tmp, Path(filepath))
        except BaseException as err:
            if trainer.is_global_zero:
                remove_path(Path(tmp))
            cause = no_room_cause(err)
            if cause is not None and not isinstance(err, NoRoomError):
                raise _no_room(cause, filepath, self._size_estimate(trainer, filepath, weights_only)) from err
            raise
        trainer.strategy.barrier("lit_ft checkpoint rename")
        record_saved(self, trainer.global_step, filepath)
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(self)
            self._write_pointer(trainer)

    def _size_estimate(self, trainer: Trainer, filepath: str, weights_only: bool) -> int:
        """About the bytes a checkpoint needs: the previous one of its kind, else the model's weights (at least)."""
        previous = [filepath] if weights_only else [filepath, self.last_model_path]
        weights = sum(t.numel() * t.element_size() for t in trainer.lightning_module.state_dict().values())
        return file_size(*previous) or weights

    def _write_pointer(self, trainer: Trainer) -> None:
        assert self.dirpath is not None
        here = Path(self.dirpath)
        score = self.best_model_score
        versions = logger_versions(trainer)
        pointer = {
            "best": _relative(self.best_model_path, here),
            "last": _relative(self.last_model_path or last_checkpoint_saved(self), here),
            "monitor": self.monitor,
            "mode": self.mode,
            "score": None if score is None else float(score),
            "tie_break": self.tie_break,  # decides between equal scores: the lower wins
            "tie_break_value": self.tie_losses.get(self.best_model_path),
            "ties": self.ties,  # validations that reached the best score (more than 1: tie_break chose)
            "global_step": trainer.global_step,
            "logger_versions": versions,  # continued by `fit --ckpt_path last`
            "wandb_run_id": next((v["version"] for v in versions if v["class"] == "WandbLogger"), None),
        }
        write_text(json.dumps(pointer, indent=2), here / POINTER)

    # ---- what a checkpoint holds besides Lightning's state ----------------------------------------
    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(trainer, pl_module, checkpoint)
        checkpoint["lit_ft"] = {"rng": rng_states(trainer), "log_rows": flush_and_count_rows(trainer)}
        if self._between_batches:
            # saved at the next batch's start, which Lightning has already counted as ready: record the state
            # as it was when the previous batch (and its logging and any validation) had finished
            progress = checkpoint["loops"]["fit_loop"]["epoch_loop.batch_progress"]
            for part in ("total", "current"):
                progress[part]["ready"] = progress[part]["completed"]
            progress["is_last_batch"] = False

    def on_load_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(trainer, pl_module, checkpoint)
        extra = checkpoint.get("lit_ft") or {}
        if trainer.state.fn == "fit":
            self._pending_rng = extra.get("rng")
            if extra.get("log_rows"):
                truncate_csv_logs(trainer, extra["log_rows"])
            skip_replayed_rows(trainer)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume in a moved run directory: the saved paths are rebased onto this checkpoint directory."""
        old = state_dict.get("dirpath")
        if old and self.dirpath and os.path.abspath(old) != os.path.abspath(self.dirpath):
            state_dict = _rebase(state_dict, old, str(self.dirpath))
        super().load_state_dict(state_dict)


def _no_room(cause: OSError, filepath: str, needed: int) -> NoRoomError:
    kept = [p.name for p in sorted(Path(filepath).parent.glob("*.ckpt"))]
    error = no_room_error(cause, filepath, needed, what="checkpoint")
    keep = f"; the previous checkpoints ({', '.join(kept)}) are unchanged" if kept else ""
    return NoRoomError(f"{error}{keep}")


def _fit_ends_after_this_epoch(trainer: Trainer) -> bool:
    """Whether the fit loop stops after the epoch now ending (max_steps, max_epochs or a requested stop)."""
    loop = trainer.fit_loop
    if loop.max_steps != -1 and trainer.global_step >= loop.max_steps:
        return True
    max_epochs = loop.max_epochs
    if max_epochs is not None and max_epochs != -1 and trainer.current_epoch + 1 >= max_epochs:
        return True
    return trainer.should_stop and can_stop_early(trainer)


def _validate_now(trainer: Trainer, last_validated: int) -> None:
    """Run the fit's validation loop on the current weights, as Lightning does within an epoch."""
    if not trainer.enable_validation or trainer.global_step == 0:
        return
    since = "no validation ran yet" if last_validated < 0 else f"the last one was at step {last_validated}"
    if trainer.is_global_zero:
        print(f"lit_ft: validating the final model at step {trainer.global_step} ({since}), so the best "
              "checkpoint is scored", flush=True)
    trainer.validating = True
    trainer.fit_loop.epoch_loop.val_loop.run()
    trainer.training = True


def _relative(path: str | None, base: Path) -> str | None:
    return os.path.relpath(path, base) if path else None


def _rebase(state: dict[str, Any], old: str, new: str) -> dict[str, Any]:
    def move(path: Any) -> Any:
        return os.path.join(new, os.path.relpath(path, old)) if isinstance(path, str) and path else path

    state = dict(state, dirpath=new)
    for key in ("best_model_path", "kth_best_model_path", "last_model_path"):
        state[key] = move(state.get(key))
    for key in ("best_k_models", "tie_losses"):
        state[key] = {move(k): v for k, v in (state.get(key) or {}).items()}
    return state


class TaskEarlyStopping(EarlyStopping):
    """EarlyStopping on the task's primary metric unless `monitor` is given.

    Args:
        monitor: Logged key to watch (`val/<metric>`); default the task's primary metric.
        patience: Validations without improvement before stopping.
        mode: `min` or `max`; default the monitored metric's own direction.
        **kwargs: Further `EarlyStopping` arguments.
    """

    def __init__(self, monitor: str | None = None, patience: NonNegativeInt = 3,
                 mode: Literal["min", "max"] | None = None, **kwargs: Any) -> None:
        super().__init__(monitor=monitor or "", patience=patience, mode=mode or "min", **kwargs)
        self._given_monitor = monitor
        self._auto_mode = mode is None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._given_monitor is None or self._auto_mode:
            self.monitor, mode = _task_monitor(pl_module, self._given_monitor)
            if self._auto_mode:
                self.mode = mode
                # EarlyStopping signs min_delta and starts best_score by the mode given to __init__
                self.min_delta = abs(self.min_delta) * (1 if self.monitor_op == torch.gt else -1)
                self.best_score = torch.tensor(torch.inf if self.mode == "min" else -torch.inf)
        super().setup(trainer, pl_module, stage)


def read_pointer(checkpoint_dir: str) -> dict[str, Any]:
    """A run's `best.json` (empty when there is none)."""
    pointer = Path(checkpoint_dir) / POINTER
    if not pointer.is_file():
        return {}
    try:
        return dict(json.loads(pointer.read_text()))
    except (json.JSONDecodeError, UnicodeDecodeError, TypeError) as err:
        raise UserError(f"{pointer} is not a lit_ft checkpoint pointer ({err}); delete it or give --ckpt_path FILE") \
            from err


def run_id_of(checkpoint_dir: str) -> str | None:
    """The W&B run id recorded with a run's checkpoints, if any."""
    return read_pointer(checkpoint_dir).get("wandb_run_id")


def find_checkpoint(where: str, which: str = "best") -> str:
    """Resolve a run directory, a checkpoint directory or `best.json` to the best (or last) checkpoint file (or
    sharded checkpoint directory: FSDP `state_dict_type: sharded`, DeepSpeed)."""
    from lit_ft.training.consolidate import is_checkpoint_dir

    path = Path(where)
    if (path.is_file() and path.suffix in (".ckpt", ".consolidated")) or is_checkpoint_dir(path):
        return str(path)
    candidates = [path / POINTER, path / "checkpoints" / POINTER] if path.is_dir() else [path]
    for pointer in candidates:
        if pointer.is_file():
            found = read_pointer(str(pointer.parent)).get(which)
            resolved = pointer.parent / found if found else None  # relative to best.json (absolute stays)
            if resolved is not None and (resolved.is_file() or is_checkpoint_dir(resolved)):
                return str(resolved)
            listed = sorted(p.name for p in pointer.parent.glob("*.ckpt"))
            raise UserError(
                f"{pointer} names {which} checkpoint {str(resolved) if resolved else None!r}, which does not exist "
                f"(checkpoints there: {listed or 'none'}): give --ckpt_path FILE"
            )
    if path.is_file():
        raise UserError(f"'{where}' is not a checkpoint: give a .ckpt file, a run directory or its best.json")
    raise UserError(
        f"no checkpoint found at '{where}' (absolute: {path.absolute()}): give a .ckpt file, or a run directory "
        f"holding checkpoints/{POINTER} (written by `lit_ft fit`); relative paths are taken from the current "
        "directory"
    )
