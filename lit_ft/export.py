"""Export to a plain Hugging Face model directory (model, tokenizer, label names) that `pipeline()` loads."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from lit_ft.backbone import load_tokenizer

if TYPE_CHECKING:
    from lit_ft.module import FineTuner

MANIFEST = "lit_ft.json"


def export_model(module: FineTuner, out_dir: str | Path, merge: bool = True) -> Path:
    """Write `module`'s model and tokenizer to `out_dir`, atomically: a failed export leaves nothing behind.

    Args:
        module: A built FineTuner.
        out_dir: Target directory; replaced if it exists.
        merge: For adapter (LoRA) models, merge the adapter into the base weights (True) or write the
            adapter alone (False). Plain models ignore it.
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        model: Any = module.exportable_model(merge)
        model.save_pretrained(tmp)
        tokenizer = load_tokenizer(module.hparams["backbone"])
        tokenizer.save_pretrained(tmp)
        module.plugin.export_extras(tmp)
        manifest = {k: module.hparams.get(k) for k in ("task", "backbone", "info", "task_options")}
        (tmp / MANIFEST).write_text(json.dumps({**manifest, "pipeline_tag": module.plugin.pipeline_tag}, indent=2))
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def load_checkpoint_module(ckpt_path: str) -> FineTuner:
    from lit_ft.module import FineTuner

    return FineTuner.load_from_checkpoint(ckpt_path, map_location="cpu", weights_only=False)


class ExportBest(Callback):
    """After `fit`, load the best checkpoint's weights and export them as a Hugging Face directory.

    Args:
        dir: Export directory; default `<trainer.default_root_dir>/export`.
        enabled: Export at the end of fit.
        merge: Merge LoRA adapters into the base model (False writes the adapter alone).
    """

    def __init__(self, dir: str | None = None, enabled: bool = True, merge: bool = True) -> None:
        self.dir = dir
        self.enabled = enabled
        self.merge = merge
        self.exported: Path | None = None

    def on_fit_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not self.enabled or not trainer.is_global_zero or trainer.checkpoint_callback is None:
            return
        best = getattr(trainer.checkpoint_callback, "best_model_path", "")
        if best and Path(best).is_file():
            state: dict[str, Any] = torch.load(best, map_location="cpu", weights_only=False)
            pl_module.load_state_dict(state["state_dict"])
        target = self.dir or os.path.join(trainer.default_root_dir, "export")
        self.exported = export_model(pl_module, target, merge=self.merge)  # type: ignore[arg-type]
        rank_zero_info(f"lit_ft: exported {'the best checkpoint' if best else 'the final model'} to {self.exported}")
