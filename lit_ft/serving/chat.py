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

from jinja2 import TemplateError

from lit_ft.errors import UserError
from lit_ft.serving.chat_model import ChatModel
from lit_ft.serving.streaming import Sampling, stream_generation
from lit_ft.tasks.sft.render import Message, with_system


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
        """Stream the answer to `user` in pieces of text; setting `stop` (or Ctrl-C while it streams) ends it. The
        turn and the answer, as far as it got, join the history unless the generation itself failed."""
        sampling = Sampling(temperature=self.temperature, top_p=self.top_p)
        stream = stream_generation(self.model, self.tokenizer, self.prompt_ids(user), sampling, self.max_new_tokens,
                                   halt=stop)
        pieces: list[str] = []
        kept = False
        try:
            for piece in stream:
                piece = piece if pieces else piece.lstrip()  # the answer starts at its first visible character
                if piece:
                    pieces.append(piece)
                    yield piece
            kept = True
        except (KeyboardInterrupt, GeneratorExit):  # stopped by the user: what was said so far stays
            kept = True
            raise
        finally:
            stream.close()  # stops and joins the generating thread whatever ended the loop
            if kept:
                self.messages += [{"role": "user", "content": user},
                                  {"role": "assistant", "content": "".join(pieces).strip()}]
