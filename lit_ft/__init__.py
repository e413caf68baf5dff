"""lit_ft: fine-tune pretrained language models with PyTorch Lightning, one task plugin at a time.

Everything a task plugin needs is importable from here (`from lit_ft import Task, TaskDataModule, ...`); see
docs/plugins.md. The names load on first use, so `lit_ft --help` and `lit_ft tasks` start without torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lit_ft.backbone import load_tokenizer, resolve_backbone
    from lit_ft.datamodule import TaskDataModule
    from lit_ft.domains import (
        ClosedUnitInterval,
        NonNegativeFloat,
        NonNegativeInt,
        OpenUnitInterval,
        PositiveFloat,
        PositiveInt,
        Probability,
    )
    from lit_ft.errors import UserError
    from lit_ft.generation.decoding import POSITION, extract_code, generate, number_rows
    from lit_ft.generation.task import GenerationTask
    from lit_ft.generation.text_metrics import TEXT_METRICS, GenerationMetrics, text_metric
    from lit_ft.loading import LoadOptions, load_pretrained
    from lit_ft.module import FineTuner
    from lit_ft.monitor import monitorable
    from lit_ft.registry import available_tasks, register_task
    from lit_ft.report.charts import bar_chart, heatmap, line_chart
    from lit_ft.report.run import RunFiles
    from lit_ft.report.section import Chart, Section, Table
    from lit_ft.samples import log_samples
    from lit_ft.source import FILE_FORMATS, DataSource, load_file, local_path
    from lit_ft.task import IGNORE, Batch, Task, label_tokens

# public name -> the module that defines it, imported on first use. No name may equal a submodule's: importing
# `lit_ft.<name>` anywhere sets that attribute on the package to the module, hiding the lazy name
# (so `text_metrics`, the function, is `lit_ft.generation.text_metrics.text_metrics`)
_PUBLIC = {
    # the plugin contract
    "Task": "lit_ft.task",
    "Batch": "lit_ft.task",
    "TaskDataModule": "lit_ft.datamodule",
    "register_task": "lit_ft.registry",
    "available_tasks": "lit_ft.registry",
    "FineTuner": "lit_ft.module",
    "LoadOptions": "lit_ft.loading",
    "load_pretrained": "lit_ft.loading",
    "UserError": "lit_ft.errors",
    # typed limits of task options (checked at parse time and by `lit_ft check`)
    "PositiveInt": "lit_ft.domains",
    "NonNegativeInt": "lit_ft.domains",
    "PositiveFloat": "lit_ft.domains",
    "NonNegativeFloat": "lit_ft.domains",
    "ClosedUnitInterval": "lit_ft.domains",
    "OpenUnitInterval": "lit_ft.domains",
    "Probability": "lit_ft.domains",
    # data: sources and files
    "DataSource": "lit_ft.source",
    "load_file": "lit_ft.source",
    "local_path": "lit_ft.source",
    "FILE_FORMATS": "lit_ft.source",
    "IGNORE": "lit_ft.task",
    "label_tokens": "lit_ft.task",
    # backbones and tokenizers
    "load_tokenizer": "lit_ft.backbone",
    "resolve_backbone": "lit_ft.backbone",
    # metrics of generated text, and sample tables
    "text_metric": "lit_ft.generation.text_metrics",
    "TEXT_METRICS": "lit_ft.generation.text_metrics",
    "GenerationMetrics": "lit_ft.generation.text_metrics",
    "log_samples": "lit_ft.samples",
    # generation (docs/generation.md)
    "GenerationTask": "lit_ft.generation.task",
    "generate": "lit_ft.generation.decoding",
    "extract_code": "lit_ft.generation.decoding",
    "number_rows": "lit_ft.generation.decoding",
    "POSITION": "lit_ft.generation.decoding",
    # metric directions (what `Task.monitor()` may name)
    "monitorable": "lit_ft.monitor",
    # a task's own report sections (docs/report.md)
    "RunFiles": "lit_ft.report.run",
    "Section": "lit_ft.report.section",
    "Chart": "lit_ft.report.section",
    "Table": "lit_ft.report.section",
    "line_chart": "lit_ft.report.charts",
    "bar_chart": "lit_ft.report.charts",
    "heatmap": "lit_ft.report.charts",
}
__all__ = [  # the keys of _PUBLIC, written out so type checkers see the re-exports
    "Batch",
    "Chart",
    "ClosedUnitInterval",
    "DataSource",
    "FILE_FORMATS",
    "FineTuner",
    "GenerationMetrics",
    "GenerationTask",
    "IGNORE",
    "LoadOptions",
    "NonNegativeFloat",
    "NonNegativeInt",
    "OpenUnitInterval",
    "POSITION",
    "PositiveFloat",
    "PositiveInt",
    "Probability",
    "RunFiles",
    "Section",
    "TEXT_METRICS",
    "Table",
    "Task",
    "TaskDataModule",
    "UserError",
    "available_tasks",
    "bar_chart",
    "extract_code",
    "generate",
    "heatmap",
    "label_tokens",
    "line_chart",
    "load_file",
    "load_pretrained",
    "load_tokenizer",
    "local_path",
    "log_samples",
    "monitorable",
    "number_rows",
    "register_task",
    "resolve_backbone",
    "text_metric",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    if name not in _PUBLIC:
        raise AttributeError(f"module 'lit_ft' has no attribute '{name}'")
    return getattr(importlib.import_module(_PUBLIC[name]), name)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
