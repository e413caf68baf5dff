"""A trained model ready to answer inputs: from a run directory (its best checkpoint), a checkpoint file or an
export directory, with its task, tokenizer and the data module that encodes inputs as training encoded them.

`lit_ft serve` and `lit_ft chat` load through `load_served`. Checkpoints load with weights_only=True
(`lit_ft.training.safe_load`) and exports from safetensors: no pickle code runs on this path.
"""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from lit_ft.datamodule import TaskDataModule
from lit_ft.errors import UserError
from lit_ft.module import FineTuner
from lit_ft.owned_dir import MANIFEST
from lit_ft.task import Task


@dataclass
class Loaded:
    """A model loaded for inference.

    Attributes:
        task: The task plugin (its `forward`, `predictions`, generation settings).
        model: The model, in eval mode.
        datamodule: The task's data module with the training run's settings, its info adopted: it encodes inputs.
        module: The FineTuner holding model and task.
        origin: Where the weights came from: `{"kind": "checkpoint" | "export", "path": ..., "run_dir": ...}`.
        data: The data module's saved settings (empty for an export written before lit_ft kept them).
    """

    task: Task
    model: nn.Module
    datamodule: TaskDataModule
    module: FineTuner
    origin: dict[str, Any]
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def tokenizer(self) -> Any:
        return self.datamodule.tokenizer

    @property
    def backbone(self) -> str:
        return str(self.module.hparams["backbone"])

    @property
    def labels(self) -> list[str] | None:
        names = self.task.info.get("label_names")
        return list(names) if names else None

    @property
    def generates(self) -> bool:
        """Whether the model generates text (its task has `generate`): it gets the OpenAI-compatible routes."""
        return callable(getattr(self.task, "generate", None))


def load_served(path: str | Path, which: str = "best") -> Loaded:
    """Load what `lit_ft serve PATH` serves.

    Args:
        path: An export directory (with `lit_ft.json`), a run directory (its `which` checkpoint), or a .ckpt file.
        which: `best` or `last`, for a run directory.
    """
    where = Path(path)
    if not where.exists():
        raise UserError(f"'{path}' does not exist (absolute: {where.absolute()}); give a run directory, a .ckpt file "
                        "or an export directory")
    if where.is_dir() and (where / MANIFEST).is_file() and _manifest(where).get("kind") == "export":
        loaded = _from_export(where)
    else:
        loaded = _from_checkpoint(where, which)
    loaded.model.eval()
    loaded.task.bind_data(loaded.datamodule)
    return loaded


def _manifest(export_dir: Path) -> dict[str, Any]:
    try:
        found = json.loads((export_dir / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        raise UserError(f"{export_dir / MANIFEST} is not readable JSON ({err}); export the run again") from None
    return found if isinstance(found, dict) else {}


def _from_export(export_dir: Path) -> Loaded:
    manifest = _manifest(export_dir)
    missing = [k for k in ("task", "info") if k not in manifest]
    if missing:
        raise UserError(f"{export_dir / MANIFEST} lacks {missing}: it was not written by `lit_ft export`")
    module = FineTuner(task=manifest["task"], backbone=str(export_dir.absolute()),
                       task_options=manifest.get("task_options") or {}, info=manifest["info"])
    data = dict(manifest.get("data") or {})
    data["tokenizer"] = str(export_dir.absolute())  # the export's own copy, whatever the run read
    origin = {"kind": "export", "path": str(export_dir.absolute()), "run_dir": _run_of_export(export_dir)}
    return _assemble(module, data, origin)


def _from_checkpoint(path: Path, which: str) -> Loaded:
    from lit_ft.training.checkpoint import find_checkpoint
    from lit_ft.training.consolidate import load_any_checkpoint
    from lit_ft.training.export import data_settings, module_from_checkpoint

    try:
        found = find_checkpoint(str(path), which)
    except FileNotFoundError as err:
        raise UserError(str(err)) from err
    checkpoint = load_any_checkpoint(found)
    module = module_from_checkpoint(checkpoint, found)
    data = data_settings(checkpoint.get("datamodule_hyper_parameters"))
    data.setdefault("tokenizer", module.hparams["backbone"])
    ckpt = Path(found).absolute()
    run_dir = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt.parent
    origin = {"kind": "checkpoint", "path": str(ckpt), "run_dir": str(run_dir),
              "step": checkpoint.get("global_step")}
    return _assemble(module, data, origin)


def _assemble(module: FineTuner, data: dict[str, Any], origin: dict[str, Any]) -> Loaded:
    task = module.plugin
    datamodule = _datamodule(task, data)
    datamodule.use_info(task.info)
    assert module.model is not None
    return Loaded(task=task, model=module.model, datamodule=datamodule, module=module, origin=origin, data=data)


def _datamodule(task: Task, data: dict[str, Any]) -> TaskDataModule:
    """The task's data module with the run's settings; settings it does not take (another data class's) are
    dropped rather than failing the load."""
    cls = task.datamodule
    accepted = {n for c in cls.__mro__ if issubclass(c, TaskDataModule)
                for n in inspect.signature(c.__init__).parameters}
    try:
        return cls(**{k: v for k, v in data.items() if k in accepted})
    except (TypeError, ValueError) as err:
        raise UserError(f"the saved data settings do not build {cls.__name__}: {err}") from err


def _run_of_export(export_dir: Path) -> str | None:
    """The run directory an export was written into (`RUN/export`), when it still sits there."""
    parent = export_dir.absolute().parent
    return str(parent) if (parent / "checkpoints").is_dir() or (parent / "config.yaml").is_file() else None
