"""OpenAI-compatible `POST /v1/chat/completions` and `POST /v1/completions` for generation tasks, on LitServe's
`OpenAISpec` (which splits `n` into `n` requests and streams server-sent events when `stream` is true).

Chat messages go through the chat template training rendered with (`GenerationTask.chat_prompt_ids`); a
completion prompt is the raw text, tokenized as it is. The body was checked before it got here
(`lit_ft.serving.openai_checks`), so errors here are the model's (a template that refuses the conversation).
"""

# LitServe and FastAPI read the annotations of the endpoints below: no `from __future__ import annotations`

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import litserve as ls
from fastapi import BackgroundTasks, HTTPException
from litserve.specs.openai import ChatCompletionRequest, OpenAISpec
from pydantic import BaseModel

from lit_ft.errors import UserError, one_line
from lit_ft.serving.predict_api import Settings, load_in_worker
from lit_ft.serving.streaming import Sampling, stream_text


class ChatRequest(ChatCompletionRequest):
    """LitServe's chat request with OpenAI's `seed`, which it drops."""

    seed: int | None = None


class CompletionRequest(BaseModel):
    """OpenAI's legacy completions request: a prompt to continue."""

    model: str | None = ""
    prompt: str | list[str]
    max_tokens: int | None = 16
    temperature: float | None = 1.0
    top_p: float | None = 1.0
    n: int | None = 1
    stop: str | list[str] | None = None
    stream: bool | None = False
    seed: int | None = None


def sampling(request: Any) -> Sampling:
    stop = request.stop
    limit = getattr(request, "max_completion_tokens", None) or request.max_tokens
    return Sampling(max_tokens=limit, temperature=1.0 if request.temperature is None else request.temperature,
                    top_p=1.0 if request.top_p is None else request.top_p,
                    stop=(stop,) if isinstance(stop, str) else tuple(stop or ()), seed=request.seed)


class ChatSpec(OpenAISpec):
    """`OpenAISpec` taking `ChatRequest` (with `seed`)."""

    async def chat_completion(self, request: ChatRequest, background_tasks: BackgroundTasks) -> Any:
        return await super().chat_completion(request, background_tasks)


class _GeneratingAPI(ls.LitAPI):
    """A route that generates with the served model, loaded in its LitServe worker."""

    def __init__(self, settings: Settings, spec: OpenAISpec) -> None:
        super().__init__(spec=spec)
        self.settings = settings

    def setup(self, device: str) -> None:
        self.loaded = load_in_worker(self.settings)


class ChatAPI(_GeneratingAPI):
    """`/v1/chat/completions`: the next assistant turn, streamed as it is generated."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, ChatSpec())

    def predict(self, request: ChatRequest, **kwargs: Any) -> Iterator[Any]:
        messages = [m.model_dump(exclude_none=True) for m in request.messages]
        try:
            ids = self.loaded.task.chat_prompt_ids(messages, self.loaded.datamodule)  # type: ignore[attr-defined]
        except UserError as err:
            raise HTTPException(400, one_line(str(err))) from None
        yield from with_usage(self.loaded, ids, sampling(request))


def with_usage(loaded: Any, ids: list[int], options: Sampling) -> Iterator[Any]:
    """The answer's pieces, then an empty message carrying the token counts (LitServe's spec reads them into
    `usage`)."""
    usage: dict[str, int] = {}
    yield from stream_text(loaded, ids, options, usage)
    yield {"role": "assistant", "content": "", **usage}


class CompletionsSpec(OpenAISpec):
    """`/v1/completions` on `OpenAISpec`'s queueing and streaming, answering in the completions shape."""

    def __init__(self) -> None:
        super().__init__()
        self.api_path = "/v1/completions"

    def populate_context(self, context: dict[str, Any], request: Any) -> None:
        context.update({k: v for k, v in request.model_dump().items() if k != "prompt"})

    async def chat_completion(self, request: CompletionRequest, background_tasks: BackgroundTasks) -> Any:
        if isinstance(request.prompt, list):  # OpenAI's batch of prompts: lit_ft serves one per request
            if len(request.prompt) != 1:
                raise HTTPException(400, "prompt: give one prompt (a string) per request")
            request.prompt = request.prompt[0]
        return await super().chat_completion(request, background_tasks)  # type: ignore[arg-type]

    async def streaming_completion(self, request: Any, pipe_responses: list) -> AsyncIterator[str]:
        async for event in super().streaming_completion(request, pipe_responses):
            yield _as_completion_event(event)

    async def non_streaming_completion(self, request: Any, generator_list: list) -> Any:
        chat = await super().non_streaming_completion(request, generator_list)
        return {"id": chat.id.replace("chatcmpl", "cmpl"), "object": "text_completion", "created": chat.created,
                "model": chat.model, "usage": chat.usage.model_dump(),
                "choices": [{"index": c.index, "text": c.message.content or "", "finish_reason": c.finish_reason,
                             "logprobs": None} for c in chat.choices]}


def _as_completion_event(event: str) -> str:
    """A chat chunk event as a completions chunk event (`[DONE]` and errors pass as they are)."""
    if not event.startswith("data: {"):
        return event
    chunk = json.loads(event[len("data: "):])
    if "choices" not in chunk:
        return event
    choices = [{"index": c["index"], "text": (c.get("delta") or {}).get("content") or "",
                "finish_reason": c.get("finish_reason"), "logprobs": None} for c in chunk["choices"]]
    out = {"id": chunk["id"].replace("chatcmpl", "cmpl"), "object": "text_completion", "created": chunk["created"],
           "model": chunk["model"], "choices": choices}
    return f"data: {json.dumps(out)}\n\n"


class CompletionsAPI(_GeneratingAPI):
    """`/v1/completions`: the continuation of a raw prompt, streamed as it is generated."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings, CompletionsSpec())

    def predict(self, request: CompletionRequest, **kwargs: Any) -> Iterator[Any]:
        ids = self.loaded.tokenizer(request.prompt)["input_ids"][-self.loaded.datamodule.max_length:]
        yield from with_usage(self.loaded, list(ids), sampling(request))
