"""The model `lit_ft chat` talks to: a run's best (or last) checkpoint, loaded without pickle code, or an export.

Only generation models chat: a task whose `pipeline_tag` is `text-generation` (sft, or a plugin's causal LM).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_ft.errors import UserError
from lit_ft.owned_dir import read_manifest

CHAT_TAG = "text-generation"


@dataclass
class ChatModel:
    """What a chat needs: the model, its tokenizer and the chat settings of training.

    Attributes:
        model: The causal LM, in eval mode.
        tokenizer: Its tokenizer (pad token set).
        chat_template: The run's `data.chat_template` (None: the tokenizer's own, else the fallback).
        system_prompt: The run's `data.system_prompt`.
        source: Where the weights come from, for the greeting.
    """

    model: Any
    tokenizer: Any
    chat_template: str | None
    system_prompt: str | None
    source: str


def load_chat_model(path: Path, which: str = "best") -> ChatModel:
    """The chat model of an export directory (its `lit_ft.json`), else of a run directory or checkpoint."""
    if not path.exists():
        raise UserError(f"'{path}' does not exist (absolute: {path.absolute()}); give a run directory (written by "
                        "`lit_ft fit`), a .ckpt file or an export directory")
    manifest = read_manifest(path) if path.is_dir() else {}
    loaded = _from_export(path, manifest) if manifest.get("kind") == "export" else _from_checkpoint(path, which)
    loaded.model.eval()
    return loaded


def _refuse_other_tasks(task: Any, tag: Any, path: Path) -> None:
    if tag != CHAT_TAG:
        raise UserError(f"'{path}' holds a {task} model ({tag}); lit_ft chat talks to text-generation models (sft): "
                        "use `lit_ft predict` or `lit_ft serve` for this one")


def _from_export(path: Path, manifest: dict[str, Any]) -> ChatModel:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from lit_ft.backbone import pad_with_eos

    _refuse_other_tasks(manifest.get("task"), manifest.get("pipeline_tag"), path)
    tokenizer = pad_with_eos(AutoTokenizer.from_pretrained(path))
    model = AutoModelForCausalLM.from_pretrained(path)
    return ChatModel(model, tokenizer, None, None, f"{manifest.get('task')} model exported to {path}")


def _from_checkpoint(path: Path, which: str) -> ChatModel:
    from lit_ft.backbone import load_tokenizer, pad_with_eos
    from lit_ft.training.checkpoint import find_checkpoint
    from lit_ft.training.export import load_checkpoint_module
    from lit_ft.training.model_card import run_config

    found = Path(find_checkpoint(str(path), which))
    run_dir = found.parent.parent if found.parent.name == "checkpoints" else found.parent
    module = load_checkpoint_module(str(found))
    _refuse_other_tasks(module.hparams.get("task"), module.plugin.pipeline_tag, path)
    tokenizer = getattr(module.plugin, "tokenizer", None) or pad_with_eos(load_tokenizer(module.hparams["backbone"]))
    data = (run_config(run_dir).get("data") or {}).get("init_args") or {}
    return ChatModel(module.exportable_model(True), tokenizer, data.get("chat_template"),
                     data.get("system_prompt"), f"{module.hparams.get('task')} model of checkpoint {found}")
