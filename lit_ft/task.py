"""The task-plugin contract: everything that differs between tasks, behind one small class.

A task plugin is a subclass of `Task` registered under a name (see `lit_ft.registry`). The shared
`FineTuner` builds one instance per run with the data's `info` (label names and the like, saved in the
checkpoint) and the recipe's `task_options`, and calls only the methods below. It never looks at the
task's name.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import torch
from torch import nn
from torchmetrics import MetricCollection

from lit_ft.errors import UserError

if TYPE_CHECKING:
    from lit_ft.datamodule import TaskDataModule
    from lit_ft.loading import LoadOptions
    from lit_ft.report.run import RunFiles
    from lit_ft.report.section import Section

Batch = dict[str, Any]
IGNORE = -100  # a label that carries no loss (PyTorch's cross-entropy `ignore_index`, Transformers' convention)


def label_tokens(batch: Batch, shift: int = 0) -> int:
    """Labels with a loss in `batch["inputs"]["labels"]`, from position `shift` on (1 for causal LMs, whose
    shifted loss never predicts the first token)."""
    labels = batch["inputs"]["labels"]
    return int((labels[:, shift:] != IGNORE).sum())
"""A batch: `inputs` (the model's keyword arguments, tensors) plus task keys such as `id`."""


class Task:
    """Base class of task plugins.

    Args:
        info: What the data tells the model (for example `label_names`); JSON-serialisable, saved with
            the checkpoint so the model can be rebuilt without the data.
        **options: Task settings from the recipe's `model.task_options`; subclasses take them as typed
            keyword arguments, so an unknown option fails with the list of known ones.
    """

    name: ClassVar[str] = ""
    datamodule: ClassVar[type[TaskDataModule]]
    pipeline_tag: ClassVar[str | None] = None
    """The `transformers.pipeline` task name an export loads in, if any."""
    peft_task_type: ClassVar[str | None] = None
    """The `peft.TaskType` name used when LoRA wraps this task's model."""
    model_options: ClassVar[frozenset[str]] = frozenset()
    """The `task_options` that shape the model `build_model` makes (a head's size, say): fixed by training, so
    validate / test / predict from a checkpoint with a different value is an error naming the option. Every other
    option only steers decoding, scoring or monitoring and may be changed then. None by default."""
    throughput_unit: ClassVar[Literal["samples", "tokens"]] = "samples"
    """What the progress bar counts per second: examples, or input tokens (generation tasks)."""
    onnx_outputs: ClassVar[tuple[str, ...] | None] = None
    """The model outputs an ONNX export writes (`("logits",)`, say), by their Transformers output names, for models
    that map the tokenizer's outputs to tensors in one forward pass; None (the default): `lit_ft export --format
    onnx` refuses the task (generation runs a decoding loop that one ONNX graph does not hold)."""
    predictions_at_test: ClassVar[bool] = False
    """Whether `predictions` only reads the outputs of the evaluation forward pass (no generation): then
    `lit_ft test` writes them too, with the gold labels, to `test_predictions.jsonl` (error analysis, the
    report's confusion matrix) at almost no cost. Off by default."""

    trainer_defaults: ClassVar[dict[str, Any]] = {}
    """Trainer settings this task trains better with than lit_ft's defaults, by `lightning.pytorch.Trainer` argument
    name (`{"gradient_clip_val": None}`, say): `fit` uses them wherever no recipe, overlay or flag sets the option
    (`lit_ft.task_defaults`). Declare one only from a benchmark against the HF Trainer on the task (bench/README.md),
    and list it in the task's docs. None by default."""

    ddp_kwargs: ClassVar[dict[str, Any]] = {}
    """Keyword arguments of `torch.nn.parallel.DistributedDataParallel` this task's model needs when a run trains
    under DDP (`lit_ft.ddp_options`): `{"find_unused_parameters": True}` for a model some of whose parameters get no
    gradient in a step (a pooler or head that `forward` runs but the loss does not use), which DDP otherwise
    stops on. A value the run's strategy sets itself (`trainer.strategy.init_args`) wins. None by default."""

    def __init__(self, info: dict[str, Any], **options: Any) -> None:
        if options:
            raise TypeError(f"task '{self.name}' takes no task_options; got {sorted(options)}")
        self.info = info

    def build_model(self, backbone: str, load: LoadOptions) -> nn.Module:
        """Build the pretrained backbone with this task's head; `backbone` is already resolved to a path or id.

        `load` carries what the run decides (dtype, quantization, attention kernels, device map, the `meta` device
        of `lit_ft estimate`): load through `lit_ft.load_pretrained(AutoModelFor..., backbone, load, ...)`, which
        applies it."""
        raise NotImplementedError

    def bind_data(self, datamodule: TaskDataModule) -> None:
        """Called with the run's data module before any batch (fit, validate, test, predict); nothing by default.

        For tasks whose metrics or predictions need the raw rows (say the contexts that answer spans are cut
        from): every process holds the whole split there, so they stay out of batches and metric states."""

    def forward(self, model: nn.Module, batch: Batch) -> Any:
        return model(**batch["inputs"])

    def loss(self, outputs: Any, batch: Batch) -> torch.Tensor:
        return outputs.loss

    def loss_weight(self, batch: Batch) -> int:
        """How many terms the batch's loss is the mean of, so `val/loss` / `test/loss` is that mean over the whole
        split whatever the batching (eval batch size, padding, number of devices). Examples by default; a task
        whose loss is a mean over tokens counts them (`label_tokens`). A batch of weight 0 counts nowhere."""
        return len(batch["id"])

    def metrics(self) -> MetricCollection:
        """A fresh metric collection; the FineTuner makes one per stage."""
        raise NotImplementedError

    def update_metrics(self, metrics: MetricCollection, model: nn.Module, batch: Batch, outputs: Any) -> None:
        raise NotImplementedError

    def predictions(self, model: nn.Module, batch: Batch, outputs: Any) -> list[dict[str, Any]]:
        """One JSON-ready record per input of the batch (batch item), in batch order, each carrying the input's
        `id`; the FineTuner adds each item's row (`lit_ft.rows.ROW`), by which the records are ordered and joined."""
        raise NotImplementedError

    def serve_rows(self, inputs: list[Any], datamodule: TaskDataModule) -> dict[str, list[Any]]:
        """The inputs of a `lit_ft serve` request -> rows (columns, one value per input) that the data module encodes
        as its predict split (`TaskDataModule.request_features`), so serving runs the task's own `encode`,
        `collate`, `forward` and `predictions`.

        By default an input is a row, as a JSON object keyed by the data module's column names (`{"text": ...}`,
        `{"question": ..., "context": ...}`), or a text, which fills the column a plain text file's line fills
        (`line_column_name`). A wrong input raises a UserError naming the input and what to send."""
        column = datamodule.line_column_name()
        rows: list[dict[str, Any]] = []
        for i, value in enumerate(inputs):
            if isinstance(value, str) and column is not None:
                rows.append({column: value})
            elif isinstance(value, dict) and value:
                rows.append(dict(value))
            else:
                shape = "a JSON object of its columns" + (f" or a string (its '{column}')" if column else "")
                raise UserError(f"input {i} is {type(value).__name__} {str(value)[:40]!r}; task '{self.name}' takes "
                                f"{shape}")
        keys = list(dict.fromkeys(k for row in rows for k in row))
        return {k: [row.get(k) for row in rows] for k in keys}

    def merge_rows(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The records of a split, sorted by row, -> one record per row, in row order, each keeping its `ROW`.

        For tasks that make several inputs of one row (question answering's windows): merge them per row, by
        position, never by id (ids may repeat). Unchanged by default: one input per row."""
        return records

    def monitor(self) -> str:
        """The primary metric: its logged name within a stage (`accuracy` for `val/accuracy`), or `loss`.

        Its direction is the metric's own `higher_is_better` (see `lit_ft.monitor`), never the task's choice."""
        raise NotImplementedError

    def samples(self, metrics: MetricCollection) -> list[dict[str, Any]]:
        """Examples to show after an eval epoch (say prompt / reference / prediction), read before the metrics
        reset; logged as a table to W&B and written to `<default_root_dir>/samples/`. None by default."""
        return []

    def write_predictions(self, records: list[dict[str, Any]], path: Path) -> list[Path]:
        """Write the prediction records, one per input row in input order (merged, with their inputs, and checked
        by `PredictionWriter`); the default writes JSONL. Returns the files written."""
        from lit_ft.io import write_jsonl

        write_jsonl(records, path)
        return [path]

    def export_extras(self, out_dir: Path) -> None:
        """Write task files an export needs besides the model and tokenizer (none by default)."""

    def model_card(self, model_id: str, export_dir: Path) -> list[tuple[str, str]]:
        """The task's sections of the export's model card (`README.md`), as (title, Markdown) pairs, after the
        metrics and training settings every card has; by default "How to use" with the `usage` code.

        Args:
            model_id: The Hub repo (or the directory) the card names.
            export_dir: The directory being written (its model, tokenizer and configs are there already).
        """
        return [("How to use", f"```python\n{self.usage(model_id)}\n```")]

    def usage(self, model_id: str) -> str:
        """Python code that loads the export and runs it: `transformers.pipeline(pipeline_tag)` by default."""
        if self.pipeline_tag is None:
            return f'from transformers import AutoModel\n\nmodel = AutoModel.from_pretrained("{model_id}")'
        return (f'from transformers import pipeline\n\npipe = pipeline("{self.pipeline_tag}", model="{model_id}")\n'
                'print(pipe("Your text here"))')

    @classmethod
    def upgrade_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Task options as this version names them: options saved or written under an earlier name move to their
        current place (with a warning), so older checkpoints and recipes still load. Unchanged by default."""
        return dict(options)

    @classmethod
    def report_sections(cls, run: RunFiles) -> list[Section]:
        """The task's own sections of `lit_ft report` (a confusion matrix, per-type scores, error examples),
        built from what a run wrote (`run.predictions(...)`, `run.metric_files`, ...). A class method: the report
        builds no model. None by default: every task gets the generic curves, metric tables and sample tables."""
        return []


def check_build_model(task: type[Task]) -> None:
    """A plugin written before `build_model` took the loading options fails with the fix, not a TypeError."""
    parameters = list(inspect.signature(task.build_model).parameters.values())
    kinds = {p.kind for p in parameters}
    if len(parameters) < 3 and not kinds & {inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD}:
        raise UserError(
            f"task '{task.name}' ({task.__module__}.{task.__qualname__}) defines build_model(self, backbone), the "
            "contract before lit_ft passed the loading options: define build_model(self, backbone, load) and load "
            "with lit_ft.load_pretrained(AutoModelFor..., backbone, load, ...) (docs/plugins.md)"
        )


def restored_options(task: type[Task], saved: dict[str, Any] | None, given: dict[str, Any] | None) -> dict[str, Any]:
    """The task options of a model rebuilt from a checkpoint: the saved ones, updated by those given now.

    `given` are the options of the current config (recipe and command line), so decoding and scoring settings
    (`generate_kwargs`, `version_2_with_negative`, `threshold`, ...) can change at validate / test / predict, key
    by key. Both are read through `task.upgrade_options`, so options under earlier names still apply.
    An option of `task.model_options` given with a value other than the checkpoint's is a UserError.
    """
    merged = task.upgrade_options(saved or {})
    defaults = {n: p.default for n, p in inspect.signature(task.__init__).parameters.items()
                if p.default is not inspect.Parameter.empty}
    for key, value in task.upgrade_options(given or {}).items():
        trained = merged.get(key, defaults.get(key))
        if key in task.model_options and value != trained:
            raise UserError(
                f"model.task_options.{key} is {value!r} but the checkpoint was trained with {trained!r}; "
                f"'{key}' shapes the {task.name} model, so it cannot change after training: drop it from the "
                f"config and command line, or set it to {trained!r}"
            )
        merged[key] = value
    return merged
