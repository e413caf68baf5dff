"""lit_ft: fine-tune pretrained language models with PyTorch Lightning, one task plugin at a time."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lit_ft.datamodule import TaskDataModule
    from lit_ft.module import FineTuner
    from lit_ft.registry import register_task
    from lit_ft.source import DataSource
    from lit_ft.task import Batch, Task

# imported on first use, so `lit_ft --help` and `lit_ft tasks` start without torch and Lightning
_PUBLIC = {
    "Batch": "lit_ft.task",
    "DataSource": "lit_ft.source",
    "FineTuner": "lit_ft.module",
    "Task": "lit_ft.task",
    "TaskDataModule": "lit_ft.datamodule",
    "register_task": "lit_ft.registry",
}
__all__ = ["Batch", "DataSource", "FineTuner", "Task", "TaskDataModule", "register_task"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'lit_ft' has no attribute '{name}'")
    return getattr(importlib.import_module(_PUBLIC[name]), name)
