"""Optuna's private names that lit_ft uses, each with the public API it waits for (`ACCESSES`, checked by
`tests/test_library_internals.py`)."""

from __future__ import annotations

from typing import Any

from lit_ft.adapters.library_access import Access

ACCESSES = [
    Access("optuna.trial.FrozenTrial", "_trial_id", "instance attribute", "none yet: reopening a RUNNING trial "
           "of the storage as an `optuna.trial.Trial` (to fail it)", "tune.study"),
]


def storage_trial_id(frozen: Any) -> int:
    """The storage's id of a trial (`optuna.trial.Trial(study, id)` reopens it)."""
    return int(frozen._trial_id)
