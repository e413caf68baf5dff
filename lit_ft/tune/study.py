"""The Optuna study of a search: one SQLite file per tune directory, so a rerun continues where the last one ended.

The study's direction is the monitored metric's own (`lit_ft.monitor`), which is known only once a fit has built
the task: a new search samples its first trial's values outside the study, and the study is created when that
trial's fit starts (`attacher`), with the direction of the metric it monitors. Later trials are asked from the
stored study. A trial left running by a killed search is marked failed (`interrupted`) at the next start and its
values are queued to run again; completed, pruned and failed trials count towards `--trials` and are not rerun.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lit_ft.adapters.optuna import storage_trial_id
from lit_ft.errors import UserError
from lit_ft.monitor import Mode
from lit_ft.tune.pruner import make_pruner
from lit_ft.tune.reporter import Attach
from lit_ft.tune.space import SearchSpace

STUDY_FILE = "study.db"
STUDY_NAME = "lit_ft"
INTERRUPTED = "interrupted"


def require_optuna() -> Any:
    """Optuna, imported on demand (the `tune` extra)."""
    try:
        import optuna
    except ImportError as err:
        raise UserError("lit_ft tune needs Optuna, which is not installed: pip install 'lit_ft[tune]'") from err
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


class Search:
    """The study in `<tune_dir>/study.db` (None until the first trial's fit has started). `seed` seeds the sampler,
    `trial_seed` every trial's `seed_everything`."""

    def __init__(self, tune_dir: Path, space: SearchSpace, seed: int, trial_seed: int) -> None:
        self.optuna = require_optuna()
        self.tune_dir, self.space, self.seed, self.trial_seed = tune_dir, space, seed, trial_seed
        self.db = tune_dir / STUDY_FILE
        self.storage = f"sqlite:///{self.db.resolve()}"
        self.pruner = make_pruner(space.pruner, f"search space {space.path}")
        self.study: Any = self._load()

    def _sampler(self, trials_so_far: int = 0) -> Any:
        """TPE seeded by the search's seed and the trials so far: a resumed search draws what an uninterrupted one
        would, instead of repeating the first run's random draws."""
        return self.optuna.samplers.TPESampler(seed=self.seed + trials_so_far)

    def _load(self) -> Any:
        if not self.db.is_file():
            return None
        try:
            study = self.optuna.load_study(study_name=STUDY_NAME, storage=self.storage, sampler=self._sampler(),
                                           pruner=self.pruner)
        except KeyError:
            return None
        saved = study.user_attrs.get("space")
        if saved is not None and saved != json.loads(json.dumps(self.space.describe())):
            raise UserError(
                f"{self.db} holds a search over another space than {self.space.path} (saved: {saved}); restore "
                "the search file, or search in a new directory (--tune_dir, or another trainer.default_root_dir)"
            )
        return study

    # ---- counting and recovering ----------------------------------------------------------------
    def trials(self) -> list[Any]:
        return [] if self.study is None else list(self.study.get_trials(deepcopy=False))

    def finished(self) -> int:
        """Trials that count towards `--trials`: complete, pruned, or failed other than by an interruption."""
        states = self.optuna.trial.TrialState
        return sum(t.state in (states.COMPLETE, states.PRUNED)
                   or (t.state == states.FAIL and not t.user_attrs.get(INTERRUPTED)) for t in self.trials())

    def recover_interrupted(self) -> list[int]:
        """Trials a killed search left running: failed (interrupted), and their values queued to run again."""
        running = [t for t in self.trials() if t.state == self.optuna.trial.TrialState.RUNNING]
        for frozen in running:
            self.interrupted(self.optuna.trial.Trial(self.study, storage_trial_id(frozen)))
        return [t.number for t in running]

    def interrupted(self, trial: Any) -> None:
        trial.set_user_attr(INTERRUPTED, True)
        self.study.tell(trial, state=self.optuna.trial.TrialState.FAIL)
        self.study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})

    # ---- trials -----------------------------------------------------------------------------------
    def next_trial(self) -> tuple[Any, dict[str, Any], int]:
        """(the Optuna trial or None for a new study's first, its values, its number)."""
        distributions = self.space.distributions()
        if self.study is not None:
            self.study.sampler = self._sampler(len(self.trials()))
            trial = self.study.ask(distributions)
            return trial, dict(trial.params), int(trial.number)
        scratch = self.optuna.create_study(sampler=self._sampler())  # in memory: only to draw the first values
        return None, dict(scratch.ask(distributions).params), 0

    def attacher(self, trial: Any, params: dict[str, Any], trial_dir: Path) -> Attach:
        """What the trial's `TrialReporter` calls at fit start with the run's monitor and its direction."""

        def attach(monitor: str, mode: Mode) -> Any:
            found = trial if trial is not None else self._create(monitor, mode, params)
            expected = self.study.user_attrs.get("monitor")
            if expected != monitor:
                raise UserError(f"{self.db} optimises {expected} but this fit monitors {monitor}; keep the search's "
                                "checkpoint.monitor / task_options.monitor, or search in a new --tune_dir")
            found.set_user_attr("dir", str(trial_dir))
            found.set_user_attr("seed", self.trial_seed)
            return found

        return attach

    def _create(self, monitor: str, mode: Mode, params: dict[str, Any]) -> Any:
        self.tune_dir.mkdir(parents=True, exist_ok=True)
        study = self.optuna.create_study(storage=self.storage, study_name=STUDY_NAME, sampler=self._sampler(),
                                         pruner=self.pruner, direction="maximize" if mode == "max" else "minimize")
        study.set_user_attr("monitor", monitor)
        study.set_user_attr("space", json.loads(json.dumps(self.space.describe())))
        study.enqueue_trial(params)
        self.study = study
        return study.ask(self.space.distributions())

    def monitor(self) -> str:
        return str(self.study.user_attrs.get("monitor", "value")) if self.study is not None else "value"
