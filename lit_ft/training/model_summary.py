"""The model in one line at the start of fit, instead of Lightning's module table (with its `FLOPs 0`)."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import ModelSummary
from lightning.pytorch.utilities.model_summary import get_human_readable_count

from lit_ft.domains import AllOrCount


class ModelLine(ModelSummary):
    """`model: BertForSequenceClassification, 22.7 M parameters (22.7 M trainable), 90.9 MB`.

    Args:
        max_depth: Module nesting summarised; 0 prints nothing.
    """

    def __init__(self, max_depth: AllOrCount = 1) -> None:
        super().__init__(max_depth=max_depth)

    @staticmethod
    def summarize(
        summary_data: list[tuple[str, list[str]]],
        total_parameters: int,
        trainable_parameters: int,
        model_size: float,
        total_training_modes: dict[str, int],
        total_flops: int,
        **summarize_kwargs: Any,
    ) -> None:
        print(model_line(summary_data, total_parameters, trainable_parameters, model_size, total_flops), flush=True)


def model_line(summary_data: list[tuple[str, list[str]]], total: int, trainable: int, size_mb: float,
               flops: int = 0) -> str:
    columns = dict(summary_data)
    types = dict(zip(columns.get("Name", []), columns.get("Type", []), strict=False))
    line = f"model: {types.get('model', 'model')}, {get_human_readable_count(total).strip()} parameters"
    if trainable != total:
        line += f" ({get_human_readable_count(trainable).strip()} trainable)"
    line += f", {size_mb:,.1f} MB"
    return line + (f", {get_human_readable_count(flops).strip()} FLOPs" if flops else "")
