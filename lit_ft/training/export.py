"""Export to a plain Hugging Face model directory (model, tokenizer, label names) that `pipeline()` loads."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from lit_ft.backbone import load_tokenizer
from lit_ft.errors import UserError
from lit_ft.owned_dir import MANIFEST, claim, write_owned_dir
from lit_ft.training.model_card import CardSource, write_model_card
from lit_ft.training.nan_guard import NonFiniteError, non_finite_parameters
from lit_ft.training.safe_load import load_checkpoint_file

if TYPE_CHECKING:
    from lit_ft.module import FineTuner

EXPORT_KIND = "export"  # the kind in the manifest (`lit_ft.json`) of every export, ONNX ones too


def export_model(module: FineTuner, out_dir: str | Path, merge: bool = True, overwrite: bool = False,
                 label: str = "--output_dir", source: CardSource | None = None, model_id: str | None = None,
                 data: dict[str, Any] | None = None) -> Path:
    """Write `module`'s model, tokenizer and model card (`README.md`) to `out_dir`, atomically: a failed export
    leaves nothing behind.

    The files are written to a hidden temporary directory next to `out_dir`, then moved in (`lit_ft.owned_dir`);
    a killed export's temporary directory is removed by the next export or fit in that directory.

    Args:
        module: A built FineTuner.
        out_dir: Target directory: missing, empty or an earlier export (its files are replaced).
        merge: For adapter (LoRA) models, merge the adapter into the base weights (True) or write the
            adapter alone (False). Plain models ignore it.
        overwrite: Write into a directory holding files lit_ft did not write (they are kept).
        label: The option naming `out_dir`, for messages.
        source: The run and checkpoint the weights come from, for the model card (its metrics and settings).
        model_id: The Hub repo (or directory) the model card names; default `out_dir`.
        data: The data module's settings (`data_settings`), kept in `lit_ft.json` so `lit_ft serve` encodes
            requests as training encoded rows (chat template, lengths, columns).
    """
    def write(tmp: Path) -> None:
        model: Any = module.exportable_model(merge)
        model.save_pretrained(tmp)
        write_tokenizer_and_manifest(module, tmp, **({"data": data} if data else {}))
        write_model_card(module, tmp, source or CardSource(), model_id or str(out_dir))

    return write_export_dir(module, out_dir, write, overwrite, label)


def write_export_dir(module: FineTuner, out_dir: str | Path, write: Callable[[Path], None],
                     overwrite: bool = False, label: str = "--output_dir") -> Path:
    """Run `write` on a hidden temporary directory next to `out_dir`, then move its files in (nothing is changed
    when `write` fails); refuses a model with non-finite weights before writing anything."""
    out = Path(out_dir)
    claim(out, EXPORT_KIND, overwrite, label)
    bad = non_finite_parameters(module)
    if bad:
        raise NonFiniteError(f"not exporting to {out}: parameter '{bad}' holds NaN or inf (the run diverged)")
    return write_owned_dir(out, EXPORT_KIND, write, overwrite, label)


def write_tokenizer_and_manifest(module: FineTuner, out: Path, **extra: Any) -> None:
    """The backbone's tokenizer, the task's extra files and `lit_ft.json` (task, backbone, info, ...)."""
    load_tokenizer(module.hparams["backbone"]).save_pretrained(out)
    module.plugin.export_extras(out)
    manifest = {k: module.hparams.get(k) for k in ("task", "backbone", "info", "task_options")}
    manifest.update(pipeline_tag=module.plugin.pipeline_tag, **extra)
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))


def load_checkpoint_module(ckpt_path: str) -> FineTuner:
    """Rebuild the FineTuner a checkpoint was saved from (safe load: no pickle code runs); a sharded checkpoint
    directory (FSDP, DeepSpeed) is gathered first (`lit_ft.training.consolidate`)."""
    from lit_ft.training.consolidate import load_any_checkpoint

    return module_from_checkpoint(load_any_checkpoint(ckpt_path), ckpt_path)


def load_for_export(ckpt_path: str, run_dir: Path) -> tuple[FineTuner, CardSource, dict[str, Any]]:
    """The FineTuner of a checkpoint, where its weights come from (the model card's metrics), and its data
    module's settings (`data_settings`)."""
    from lit_ft.training.consolidate import load_any_checkpoint

    checkpoint = load_any_checkpoint(ckpt_path)
    return (module_from_checkpoint(checkpoint, ckpt_path), card_source(checkpoint, ckpt_path, run_dir),
            data_settings(checkpoint.get("datamodule_hyper_parameters")))


def data_settings(hparams: Any) -> dict[str, Any]:
    """A data module's saved settings without where its rows came from (`source`) and Lightning's private keys:
    what encoding a new input the same way needs."""
    from lit_ft.domains import plain_numbers

    if not hparams:
        return {}
    return {k: plain_numbers(v) for k, v in dict(hparams).items() if not k.startswith("_") and k != "source"}


def card_source(checkpoint: dict[str, Any], ckpt_path: str | None, run_dir: Path) -> CardSource:
    step = checkpoint.get("global_step")
    return CardSource(run_dir, ckpt_path, step if isinstance(step, int) else None)


def module_from_checkpoint(checkpoint: dict[str, Any], ckpt_path: str) -> FineTuner:
    """The FineTuner of a loaded checkpoint (`ckpt_path` names it in errors)."""
    from lit_ft.module import FineTuner

    hparams = {k: v for k, v in (checkpoint.get("hyper_parameters") or {}).items() if not k.startswith("_")}
    try:
        module = FineTuner(**hparams)
    except TypeError as err:
        raise UserError(f"checkpoint {ckpt_path} was not saved by lit_ft's FineTuner ({err})") from err
    if module.model is None:
        raise UserError(f"checkpoint {ckpt_path} has no model settings (hyper_parameters): it was not written by "
                        "`lit_ft fit`")
    module.on_load_checkpoint(checkpoint)
    module.load_state_dict(checkpoint["state_dict"])
    return module


class ExportBest(Callback):
    """After `fit`, load the best checkpoint's weights and export them as a Hugging Face directory.

    Args:
        dir: Export directory; default `<trainer.default_root_dir>/export`.
        enabled: Export at the end of fit.
        merge: Merge LoRA adapters into the base model (False writes the adapter alone).
        overwrite: Write into a `dir` holding files lit_ft did not write, keeping them (fit's `--overwrite`
            sets it).
    """

    def __init__(self, dir: str | None = None, enabled: bool = True, merge: bool = True,
                 overwrite: bool = False) -> None:
        self.dir = dir
        self.enabled = enabled
        self.merge = merge
        self.overwrite = overwrite
        self.exported: Path | None = None

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.enabled or not trainer.is_global_zero or trainer.checkpoint_callback is None:
            return
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        module: Any = pl_module
        run_dir = Path(trainer.default_root_dir)
        source = CardSource(run_dir, None, trainer.global_step)  # the final model
        if best and (Path(best).is_dir() or shards_parameters(trainer.strategy)):
            # the trained model is split across the ranks: rebuild it whole
            module, source, _ = load_for_export(best, run_dir)
        elif best and Path(best).is_file():
            checkpoint = load_checkpoint_file(best)
            pl_module.load_state_dict(checkpoint["state_dict"])
            source = card_source(checkpoint, best, run_dir)
        target = self.dir or os.path.join(trainer.default_root_dir, "export")
        datamodule = getattr(trainer, "datamodule", None)
        self.exported = export_model(module, target, merge=self.merge, overwrite=self.overwrite, label="export.dir",
                                     source=source, data=data_settings(getattr(datamodule, "hparams", None)))
        rank_zero_info(f"lit_ft: exported {'the best checkpoint' if best else 'the final model'} to {self.exported}")


def shards_parameters(strategy: Any) -> bool:
    """Whether the strategy splits the parameters across ranks (FSDP, DeepSpeed), so no rank holds the model."""
    from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, ModelParallelStrategy

    return isinstance(strategy, (FSDPStrategy, DeepSpeedStrategy, ModelParallelStrategy))
