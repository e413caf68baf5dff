"""Lightning's file loggers with `save_dir` optional: without it they write under `trainer.default_root_dir`.

Lightning's CSVLogger and TensorBoardLogger require `save_dir`, so a recipe had to repeat its run directory
there, and `--trainer.default_root_dir` on the command line moved the checkpoints but not the logs. The
`lit_ft` CLI fills an unset `save_dir` (any logger's, these included) from `trainer.default_root_dir` before
it builds the trainer (`lit_ft.commands.trainer_cli.follow_root_dir`). Used outside the CLI, unset means the current
directory.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch import loggers


class CSVLogger(loggers.CSVLogger):
    """Metrics in `<save_dir>/<name>/version_N/metrics.csv`.

    Args:
        save_dir: Directory for the logs; default `trainer.default_root_dir`.
        name: Subdirectory of this logger's runs.
        version: Run version (default: the next free `version_N`).
        prefix: String put at the beginning of metric keys.
        flush_logs_every_n_steps: How often to write the file.
    """

    def __init__(self, save_dir: str | None = None, name: str = "csv", version: int | str | None = None,
                 prefix: str = "", flush_logs_every_n_steps: int = 100) -> None:
        super().__init__(save_dir or ".", name=name, version=version, prefix=prefix,
                         flush_logs_every_n_steps=flush_logs_every_n_steps)


class TensorBoardLogger(loggers.TensorBoardLogger):
    """TensorBoard event files in `<save_dir>/<name>/version_N`.

    Args:
        save_dir: Directory for the logs; default `trainer.default_root_dir`.
        name: Subdirectory of this logger's runs.
        version: Run version (default: the next free `version_N`).
        default_hp_metric: Log a placeholder `hp_metric` with the hyperparameters.
        prefix: String put at the beginning of metric keys.
        **kwargs: Passed to `torch.utils.tensorboard.SummaryWriter`.
    """

    def __init__(self, save_dir: str | None = None, name: str = "tensorboard", version: int | str | None = None,
                 default_hp_metric: bool = True, prefix: str = "", **kwargs: Any) -> None:
        super().__init__(save_dir or ".", name=name, version=version, default_hp_metric=default_hp_metric,
                         prefix=prefix, **kwargs)
