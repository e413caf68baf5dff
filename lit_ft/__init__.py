"""lit_ft: fine-tune pretrained language models with PyTorch Lightning, one task plugin at a time."""

from lit_ft.datamodule import TaskDataModule
from lit_ft.module import FineTuner
from lit_ft.registry import register_task
from lit_ft.source import DataSource
from lit_ft.task import Batch, Task

__all__ = ["Batch", "DataSource", "FineTuner", "Task", "TaskDataModule", "register_task"]
__version__ = "0.1.0"
