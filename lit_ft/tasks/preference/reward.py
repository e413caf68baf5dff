"""The `reward_model` task: a one-output scoring head trained on preference pairs (placeholder: being written)."""

from __future__ import annotations

from lit_ft.task import Task
from lit_ft.tasks.preference.data import PreferenceData


class RewardModelTask(Task):
    """Placeholder: being written."""

    name = "reward_model"
    datamodule = PreferenceData
