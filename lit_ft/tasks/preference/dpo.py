"""The `dpo` task: DPO-family preference objectives on a causal LM (placeholder: being written)."""

from __future__ import annotations

from lit_ft.task import Task
from lit_ft.tasks.preference.data import PreferenceData


class DPOTask(Task):
    """Placeholder: being written."""

    name = "dpo"
    datamodule = PreferenceData
