"""The OpenAI routes' bodies, checked before they are queued: one line per problem, in the words of OpenAI's API
(pydantic would answer 422 with a list of locations; an unknown model would be answered by whatever is served)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
MAX_N = 8  # choices per request: each is a generation of its own


@dataclass(frozen=True)
class OpenAIChecks:
    """Checks a parsed body for `CHAT` and `COMPLETIONS`; other routes pass.

    Args:
        model_id: The one model served (`GET /v1/models`); a request naming another gets 404.
    """

    model_id: str

    def __call__(self, path: str, body: Any) -> tuple[int, str] | None:
        if path not in (CHAT, COMPLETIONS):
            return None
        if not isinstance(body, dict):
            return 400, f"the body of {path} must be a JSON object, not {type(body).__name__}"
        model = body.get("model")
        if model not in (None, "", self.model_id):
            return 404, f"model {model!r} is not served here; this server serves {self.model_id!r} (GET /v1/models)"
        found = _messages(body) if path == CHAT else _prompt(body)
        return (400, found) if found else _options(body)


def _messages(body: dict[str, Any]) -> str | None:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list of {\"role\": ..., \"content\": ...} objects"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            return f"messages[{i}] must be an object with a string 'role'"
        if not isinstance(message.get("content"), str):
            return f"messages[{i}].content must be a string (text content only)"
    return None


def _prompt(body: dict[str, Any]) -> str | None:
    prompt = body.get("prompt")
    if isinstance(prompt, str) or (isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str)):
        return None
    return "'prompt' must be a string (one prompt per request)"


def _options(body: dict[str, Any]) -> tuple[int, str] | None:
    numbers = {"temperature": (0.0, 2.0), "top_p": (0.0, 1.0)}
    for key, (bottom, top) in numbers.items():
        value = body.get(key)
        if value is not None and (not _number(value) or not bottom <= value <= top):
            return 400, f"'{key}' must be a number from {bottom} to {top}, got {value!r}"
    integers: tuple[tuple[str, int | None, int | None], ...] = (
        ("max_tokens", 1, None), ("max_completion_tokens", 1, None), ("n", 1, MAX_N), ("seed", None, None))
    for key, low, high in integers:
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or (low is not None and value < low) or \
                (high is not None and value > high):
            bounds = f" from {low}" if low is not None else ""
            bounds += f" to {high}" if high is not None else (" or more" if low is not None else "")
            return 400, f"'{key}' must be an integer{bounds}, got {value!r}"
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str) and not (
            isinstance(stop, list) and len(stop) <= 4 and all(isinstance(s, str) for s in stop)):
        return 400, "'stop' must be a string or a list of up to 4 strings"
    if "stream" in body and not isinstance(body["stream"], bool):
        return 400, f"'stream' must be true or false, got {body['stream']!r}"
    return None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
