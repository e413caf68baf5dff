"""Alias of `lit_ft.training.checkpoint` for the class paths users' YAML files name.

`class_path: lit_ft.checkpoint.TaskEarlyStopping` (configs/callbacks/early_stopping.yaml before the move, and
recipes copied from it) keeps resolving; new configs name `lit_ft.training.checkpoint`.
"""

from lit_ft.training.checkpoint import TaskCheckpoint, TaskEarlyStopping

__all__ = ["TaskCheckpoint", "TaskEarlyStopping"]
