"""The model `lit_ft chat` talks to, loaded as `lit_ft serve` loads it (`lit_ft.serving.loaded`), with the chat
settings of its training data: the data module's chat renderer (its `data.chat_template`, else the tokenizer's,
else the fallback) and its `data.system_prompt`.

A model chats when its task generates and its data module renders conversations (a `renderer`, as the sft data
module has), whatever the task's name: a plugin's causal-LM task with such a data module chats too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_ft.errors import UserError
from lit_ft.generation.decoding import is_encoder_decoder
from lit_ft.tasks.sft.render import ChatRenderer


@dataclass
class ChatModel:
    """What a chat needs.

    Attributes:
        model: The causal LM, in eval mode.
        tokenizer: Its tokenizer (pad token set).
        prompt_ids: A conversation ending with a user turn -> the token ids to answer it from, as training
            rendered its rows (`Task.chat_prompt_ids`: the chat template, the data's `system_prompt` unless the
            conversation has its own, an over-long conversation's end).
        renderer: The training data's chat renderer (for showing the history).
        system_prompt: The training data's system message (None: none).
        source: Where the weights come from, for the greeting.
    """

    model: Any
    tokenizer: Any
    prompt_ids: Callable[[list[dict[str, str]]], list[int]]
    renderer: ChatRenderer
    system_prompt: str | None
    source: str


def load_chat_model(path: Path, which: str = "best") -> ChatModel:
    """The chat model of an export directory, a run directory (its `which` checkpoint) or a checkpoint file."""
    from lit_ft.serving.loaded import load_served

    loaded = load_served(path, which)
    renderer = getattr(loaded.datamodule, "renderer", None)
    if not loaded.generates or not isinstance(renderer, ChatRenderer) or is_encoder_decoder(loaded.model):
        raise UserError(f"'{path}' holds a {loaded.task.name} model; lit_ft chat talks to generation models trained "
                        "on conversations (sft): use `lit_ft predict` or `lit_ft serve` for this one")
    system = getattr(loaded.datamodule, "system_prompt", None)
    origin = loaded.origin
    task: Any = loaded.task  # a generating task: GenerationTask's `chat_prompt_ids`

    def prompt_ids(messages: list[dict[str, str]]) -> list[int]:
        return list(task.chat_prompt_ids(messages, loaded.datamodule))

    return ChatModel(loaded.model, loaded.tokenizer, prompt_ids, renderer, system if isinstance(system, str) else None,
                     f"{loaded.task.name} model of {origin.get('kind')} {origin.get('path')}")
