"""Generating for one request with OpenAI's sampling options, the text streamed piece by piece as it is decoded.

`model.generate` runs in a thread and hands its tokens to a `TextIteratorStreamer`; a stop string found in the
text ends the answer there and stops the thread at its next step.
"""

from __future__ import annotations

import threading
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

from lit_ft.generation.decoding import decoding_settings, is_encoder_decoder
from lit_ft.serving.loaded import Loaded


@dataclass(frozen=True)
class Sampling:
    """OpenAI's decoding options.

    Attributes:
        max_tokens: Longest answer in tokens (None: the task's `max_new_tokens`).
        temperature: 0 decodes greedily; above 0 samples with it.
        top_p: Nucleus sampling mass (sampling only).
        stop: Strings that end the answer (not included in it).
        seed: Seeds the sampling, so the same request gives the same answer.
    """

    max_tokens: int | None = None
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


class _CountingStreamer(TextIteratorStreamer):
    """`TextIteratorStreamer` that also counts the tokens generated (OpenAI's `usage.completion_tokens`)."""

    def __init__(self, tokenizer: Any, skip_prompt: bool, **kwargs: Any) -> None:
        super().__init__(tokenizer, skip_prompt=skip_prompt, **kwargs)
        self.generated = 0
        self._prompt_pending = skip_prompt

    def put(self, value: torch.Tensor) -> None:
        if self._prompt_pending:  # generate's first call hands over the prompt
            self._prompt_pending = False
        else:
            self.generated += int(value.numel())
        super().put(value)


class _Halt(StoppingCriteria):
    """Stops generation at its next token once `event` is set (a stop string seen, Ctrl-C, the reader gone)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> bool:
        return self.event.is_set()


def stream_text(loaded: Loaded, prompt_ids: list[int], sampling: Sampling,
                usage: dict[str, int] | None = None) -> Generator[str, None, None]:
    """The answer to `prompt_ids`, in pieces as they are decoded (their concatenation is the whole answer);
    `usage`, when given, gets OpenAI's token counts once the answer is complete."""
    limit = sampling.max_tokens or int(getattr(loaded.task, "max_new_tokens", 128))
    return stream_generation(loaded.model, loaded.tokenizer, prompt_ids, sampling, limit, usage)


def stream_generation(model: Any, tokenizer: Any, prompt_ids: list[int], sampling: Sampling, max_new_tokens: int,
                      usage: dict[str, int] | None = None,
                      halt: threading.Event | None = None) -> Generator[str, None, None]:
    """`model`'s answer to `prompt_ids` in pieces as they are decoded, at most `max_new_tokens` tokens.

    Setting `halt` (the caller's, or one of its own) ends the generation at its next token; so does the reader
    stopping early (the generator closed, or an exception such as Ctrl-C raised while it waits): the generating
    thread is always stopped and joined before this returns or re-raises."""
    options: dict[str, Any] = {"do_sample": False}
    if sampling.temperature > 0:
        options = {"do_sample": True, "temperature": sampling.temperature, "top_p": sampling.top_p}
    settings = decoding_settings(getattr(model, "generation_config", None), tokenizer, max_new_tokens, **options)
    streamer = _CountingStreamer(tokenizer, skip_prompt=not is_encoder_decoder(model), skip_special_tokens=True)
    event = halt if halt is not None else threading.Event()
    device = next(model.parameters()).device
    ids = torch.tensor([prompt_ids], device=device)
    failure: list[BaseException] = []

    def run() -> None:
        try:
            if sampling.seed is not None:
                torch.manual_seed(sampling.seed)
            with torch.inference_mode():
                model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), streamer=streamer,
                               stopping_criteria=StoppingCriteriaList([_Halt(event)]), use_cache=True, **settings)
        except BaseException as err:  # re-raised in the reader's thread, after the streamer is closed
            failure.append(err)
            streamer.end()

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    done = False
    try:
        yield from _until_stop(streamer, sampling.stop, event)
        done = True
    finally:
        if not done:  # the reader stopped early: end the generation and let the thread finish
            event.set()
            for _ in streamer:
                pass
        worker.join()
    if failure:
        raise failure[0]
    if usage is not None:
        usage.update(prompt_tokens=len(prompt_ids), completion_tokens=streamer.generated,
                     total_tokens=len(prompt_ids) + streamer.generated)


def _until_stop(pieces: Iterator[str], stops: tuple[str, ...], halt: threading.Event) -> Iterator[str]:
    """The pieces up to the first stop string; a piece is held back while it may be the start of one."""
    text, sent = "", 0
    for piece in pieces:
        text += piece
        found = min((i for i in (text.find(s) for s in stops if s) if i >= 0), default=-1)
        if found >= 0:
            halt.set()
            if found > sent:
                yield text[sent:found]
            for _ in pieces:  # drain what the thread still puts in, so it can finish
                pass
            return
        keep = max((len(s) - 1 for s in stops), default=0)
        safe = max(sent, len(text) - keep)
        if safe > sent:
            yield text[sent:safe]
            sent = safe
    if len(text) > sent:
        yield text[sent:]
