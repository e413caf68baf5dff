"""A conversation with a generation model: the history, its prompt through the training chat template, and a reply
streamed token by token that the caller can stop.

The prompt of each turn is the whole conversation rendered as training rendered its rows (`Task.chat_prompt_ids`:
for sft, the run's `data.chat_template`, else the tokenizer's, else the fallback, with the generation prompt), the
same ids `lit_ft serve`'s `/v1/chat/completions` generates from, so the model reads its history exactly as it read
its training conversations.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import torch
from jinja2 import TemplateError
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from lit_ft.errors import UserError
from lit_ft.generation.decoding import decoding_settings
from lit_ft.serving.chat_model import ChatModel
from lit_ft.tasks.sft.render import Message, with_system


class StopFlag(StoppingCriteria):
    """Ends `generate` at the next token once `event` is set (Ctrl-C in the terminal, a closed connection)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
        done: Any = torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool)
        return done


class ChatSession:
    """The conversation so far and how to continue it.

    Args:
        chat: The model, its tokenizer and the chat settings of its training (`lit_ft.serving.chat_model`).
        system: A system message of the user's, in place of the training data's `system_prompt`.
        max_new_tokens: Longest reply, in tokens.
        temperature: 0 decodes greedily; above 0 samples at this temperature.
        top_p: Nucleus sampling's probability mass (with `temperature` > 0).
    """

    def __init__(self, chat: ChatModel, system: str | None = None, max_new_tokens: int = 256,
                 temperature: float = 0.0, top_p: float = 1.0) -> None:
        self.chat = chat
        self.model = chat.model
        self.tokenizer = chat.tokenizer
        self.system = system
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.messages: list[Message] = []

    def reset(self) -> None:
        """Forget the conversation (the system message stays)."""
        self.messages = []

    def turns(self, user: str | None = None) -> list[Message]:
        """The conversation (plus `user`'s new turn), after the user's system message if one is set (the training
        data's own is added by the prompt when none is)."""
        said = self.messages + ([{"role": "user", "content": user}] if user is not None else [])
        return with_system(said, self.system)

    def prompt_ids(self, user: str) -> list[int]:
        """The token ids the model continues from to answer `user`: the conversation rendered as training
        rendered its rows (`Task.chat_prompt_ids`, as `lit_ft serve`'s chat route renders it)."""
        try:
            return self.chat.prompt_ids(self.turns(user))
        except TemplateError as err:  # a template may refuse a system turn or a role order
            raise UserError(f"the chat template refuses the conversation ({err}); /reset, or change the /system "
                            "message") from err

    def prompt(self, user: str) -> str:
        """`prompt_ids` as text, special tokens included: exactly what the model reads."""
        return str(self.tokenizer.decode(self.prompt_ids(user), skip_special_tokens=False))

    def history(self) -> str:
        """The conversation so far through the chat template (the system message alone when it is empty)."""
        turns = with_system(self.turns(), self.chat.system_prompt)
        try:
            return self.chat.renderer.text(turns) if turns else ""
        except TemplateError as err:
            raise UserError(f"the chat template refuses the conversation ({err}); /reset") from err

    def reply(self, user: str, stop: threading.Event) -> Iterator[str]:
        """Stream the answer to `user` in pieces of text; the turn and the answer (as far as it got when `stop`
        was set) join the history once the stream ends."""
        ids = torch.tensor([self.prompt_ids(user)])
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        failed: list[BaseException] = []
        worker = threading.Thread(target=self._generate, args=(ids, streamer, stop, failed), daemon=True)
        worker.start()
        pieces: list[str] = []
        ended = False
        try:
            for piece in streamer:
                piece = piece if pieces else piece.lstrip()  # the answer starts at its first visible character
                if piece:
                    pieces.append(piece)
                    yield piece
            ended = True
        finally:
            stop.set()  # the caller stopped reading (Ctrl-C): end the generation too
            if not ended:
                for _ in streamer:  # the tokens generated before the flag was seen
                    pass
            worker.join()
            if not failed:
                self.messages += [{"role": "user", "content": user},
                                  {"role": "assistant", "content": "".join(pieces).strip()}]
        if failed:
            raise failed[0]

    def _generate(self, ids: Any, streamer: TextIteratorStreamer, stop: threading.Event,
                  failed: list[BaseException]) -> None:
        sampling = {"do_sample": True, "temperature": self.temperature, "top_p": self.top_p} \
            if self.temperature > 0 else {}
        settings = decoding_settings(self.model.generation_config, self.tokenizer, self.max_new_tokens, **sampling)
        try:
            device = next(self.model.parameters()).device
            with torch.no_grad():
                self.model.generate(input_ids=ids.to(device), attention_mask=torch.ones_like(ids).to(device),
                                    streamer=streamer,
                                    stopping_criteria=StoppingCriteriaList([StopFlag(stop)]), **settings)
        except BaseException as err:  # shown by the caller; the streamer must still end or it waits forever
            failed.append(err)
            streamer.end()
