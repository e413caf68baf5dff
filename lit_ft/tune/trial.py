"""One trial of a search: the real `lit_ft fit` (lit_ft.commands.cli.run, in this process) with the sampled values as
command-line overrides, in its own run directory `<tune_dir>/trial_<number>`, with the search's seed.

Trials run in the search's process: starting Python, torch, Lightning and transformers again for each trial would
cost more than a small trial itself, and the data's tokenization cache stays warm. What isolation gives is kept
otherwise: an exception in a trial (NaN or inf stopped by the NaN guard, out of memory, a failing batch) marks that
trial failed with its message and the search goes on; memory is released between trials; a crash or kill of the
whole process loses only the running trial, which the next start of the same command runs again (the study is on
disk). A config error (a value the parser rejects) stops the search: every trial would hit it.
"""

from __future__ import annotations

import gc
import sys
from typing import Any

from lit_ft.errors import UserError, one_line
from lit_ft.tune.recipe import overrides
from lit_ft.tune.reporter import TrialReporter
from lit_ft.tune.study import Search


def run_trial(search: Search, fit_argv: list[str]) -> None:
    """Run the next trial of `search` and record how it ended."""
    from lit_ft.commands.cli import run

    trial, params, number = search.next_trial()
    trial_dir = search.tune_dir / f"trial_{number}"
    reporter = TrialReporter(search.attacher(trial, params, trial_dir))
    argv = ["fit", *fit_argv, *overrides(params), f"--seed_everything={search.trial_seed}",
            f"--trainer.default_root_dir={trial_dir}"]
    values = " ".join(f"{k}={_short(v)}" for k, v in params.items())
    print(f"\nlit_ft: trial {number}: {values} ({trial_dir})", flush=True)
    try:
        run(argv, callbacks=[reporter])
    except search.optuna.TrialPruned as pruned:
        _end(search, reporter.trial, number, "PRUNED", f"pruned: {pruned}")
    except BaseException as err:
        _failed(search, reporter, trial, number, err)
    else:
        value = reporter.best()
        if value is None:
            _end(search, reporter.trial, number, "FAIL", f"failed: no finite {reporter.monitor} was logged")
        else:
            search.study.tell(reporter.trial, value)
            print(f"lit_ft: trial {number} complete: {reporter.monitor} {value:.4f}", flush=True)
    finally:
        _release_memory()


def _failed(search: Search, reporter: TrialReporter, asked: Any, number: int, err: BaseException) -> None:
    """A trial that raised: interrupted (stop, run it again next time), a config error (stop), or a failure."""
    trial = reporter.trial if reporter.trial is not None else asked
    stopped = _stop_signal(err)
    if stopped:
        if trial is not None:
            search.interrupted(trial)
        print(f"lit_ft: {stopped} in trial {number}; run the same command again to continue (trial {number}'s "
              "values run again)", file=sys.stderr, flush=True)
        raise SystemExit(130 if stopped == "interrupted" else 143) from err
    message = f"{type(err).__name__}: {one_line(str(err))}"[:500]
    if trial is not None:
        trial.set_user_attr("error", message)
        search.study.tell(trial, state=search.optuna.trial.TrialState.FAIL)
    if isinstance(err, SystemExit) or (isinstance(err, UserError) and not reporter.started) or trial is None:
        raise err
    print(f"lit_ft: trial {number} failed: {message}", flush=True)


def _stop_signal(err: BaseException) -> str | None:
    """Ctrl-C (Lightning ends the fit, then exits with the KeyboardInterrupt as context) or SIGTERM (a preempted
    job: Lightning raises SIGTERMException at the next step): the search stops, the trial is not its values' fault."""
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    if isinstance(err, KeyboardInterrupt) or isinstance(err.__context__, KeyboardInterrupt):
        return "interrupted"
    return "terminated (SIGTERM)" if isinstance(err, SIGTERMException) else None


def _end(search: Search, trial: Any, number: int, state: str, message: str) -> None:
    trial.set_user_attr("note", message)
    search.study.tell(trial, state=getattr(search.optuna.trial.TrialState, state))
    print(f"lit_ft: trial {number} {message}", flush=True)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _release_memory() -> None:
    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
