"""Stopping a fit on SIGTERM (what a scheduler sends before it preempts a job) or Ctrl-C, at a safe point.

Lightning already turns SIGTERM into a stop: its handler sets `trainer.received_sigterm`, and the loops raise
`SIGTERMException` (a `SystemExit`) at the end of the current training step, after its logging and any validation
due at that step. `StopOnSignal` builds on that:

- the first Ctrl-C takes the same path (it raises SIGTERM in this process instead of a `KeyboardInterrupt` in the
  middle of a step); a second Ctrl-C stops at once, as Python does;
- a signal that arrives during a fit's validation lets the validation finish, so the step's metrics and best
  checkpoint are those of an uninterrupted run (Lightning would stop mid-validation);
- when the fit stops, `last.ckpt` is written for the step just finished (through `TaskCheckpoint`, unless it
  holds that step already), and one line on stderr gives the command that resumes the run;
- the exit status says the run did not finish: 143 for SIGTERM and 130 for Ctrl-C (128 + the signal's number,
  what a shell reports for a process the signal ended), instead of Lightning's 0.
"""

from __future__ import annotations

import shlex
import signal
import sys
import threading
from types import FrameType
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lit_ft.adapters.lightning import set_received_sigterm
from lit_ft.training.checkpoint import TaskCheckpoint

EXIT_CODES = {signal.SIGINT: 130, signal.SIGTERM: 143}
NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


DROPPED = ("--ckpt_path", "--overwrite")  # the resume line names its checkpoint; it continues the run, never resets it


def resume_command(argv: list[str]) -> str:
    """`lit_ft <argv>` with `--ckpt_path last` in place of any `--ckpt_path` given and without `--overwrite`, quoted
    for a POSIX shell."""
    kept: list[str] = []
    skip = False
    for arg in argv:
        if skip:
            skip = False
        elif arg in DROPPED:
            skip = True
        elif not arg.startswith(tuple(f"{flag}=" for flag in DROPPED)):
            kept.append(arg)
    return shlex.join(["lit_ft", *kept, "--ckpt_path", "last"])


class StopOnSignal(Callback):
    """Stop a fit at the end of the current step on SIGTERM or Ctrl-C, save `last`, print how to resume.

    Args:
        argv: The command's arguments after `lit_ft` (the resume line repeats them with `--ckpt_path last`).
    """

    def __init__(self, argv: list[str]) -> None:
        self.argv = list(argv)
        self.signum: int | None = None
        self._deferred = False

    # ---- signals ---------------------------------------------------------------------------------
    def _install(self, trainer: Trainer) -> None:
        """Take over Ctrl-C once Lightning has registered its handlers (its teardown restores the previous one)."""
        if trainer.state.fn == "fit" and threading.current_thread() is threading.main_thread():
            if signal.getsignal(signal.SIGINT) != self._on_sigint:
                signal.signal(signal.SIGINT, self._on_sigint)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signum = signal.SIGINT
        signal.raise_signal(signal.SIGTERM)  # Lightning's handler: stop at the end of this step

    def on_sanity_check_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._install(trainer)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._install(trainer)

    # ---- a signal during validation waits for its end ----------------------------------------------
    def on_validation_batch_end(self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if trainer.received_sigterm and trainer.state.fn == "fit" and not trainer.sanity_checking:
            set_received_sigterm(trainer, False)
            self._deferred = True

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self._deferred:
            self._deferred = False
            set_received_sigterm(trainer, True)

    # ---- stopping ----------------------------------------------------------------------------------
    def on_exception(self, trainer: Trainer, pl_module: LightningModule, exception: BaseException) -> None:
        if isinstance(exception, SIGTERMException):
            signum = self.signum or signal.SIGTERM
            saved = self._save_last(trainer)
            exception.code = EXIT_CODES[signal.Signals(signum)]
        elif isinstance(exception, KeyboardInterrupt):
            signum, saved = signal.SIGINT, self._saved_last(trainer)  # stopped mid-step: the previous save stays
        else:
            return
        if trainer.is_global_zero:
            print(self._line(signal.Signals(signum), trainer, saved), file=sys.stderr, flush=True)

    def _checkpoint(self, trainer: Trainer) -> TaskCheckpoint | None:
        found = trainer.checkpoint_callback
        return found if isinstance(found, TaskCheckpoint) else None

    def _save_last(self, trainer: Trainer) -> str | None:
        checkpoint = self._checkpoint(trainer)
        if checkpoint is None or trainer.state.fn != "fit":
            return None
        return checkpoint.save_last_now(trainer)

    def _saved_last(self, trainer: Trainer) -> str | None:
        checkpoint = self._checkpoint(trainer)
        return checkpoint.saved_last() if checkpoint is not None else None

    def _line(self, signum: signal.Signals, trainer: Trainer, saved: str | None) -> str:
        stopped = f"lit_ft: stopped by {NAMES[signum]} at step {trainer.global_step}"
        checkpoint = self._checkpoint(trainer)
        if saved is None or checkpoint is None:
            return f"{stopped}; no checkpoint to resume from: run the same command again"
        return (f"{stopped}; {saved} holds step {checkpoint.last_saved_step}; resume with: "
                f"{resume_command(self.argv)}")
