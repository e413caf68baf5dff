"""Turning a row into text: the three data shapes, the Alpaca prompt, chat templates and their fallback.

Every row becomes a `Rendered`: the full text, the character spans that train (the responses), and the prompt
that generation starts from. Spans come from rendering prefixes of the conversation and checking that each is a
prefix of the full text, so no string search of the response is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from jinja2 import TemplateError

from lit_ft.errors import UserError

Message = dict[str, str]
# the roles chat templates render (Llama 3.1 adds `ipython`, OpenAI's format `developer` and `function`)
ROLES = ("system", "developer", "user", "assistant", "tool", "function", "ipython")

ALPACA_PROMPT = (
    "Below is an instruction that describes a task, paired with an input that provides further context. "
    "Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
)
ALPACA_PROMPT_NO_INPUT = (
    "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n"
    "### Instruction:\n{instruction}\n\n### Response:\n"
)
# Used when the tokenizer has no chat template of its own (base models, GPT-2): plain text, one header per turn,
# the EOS token closing each assistant turn so the model learns to stop.
FALLBACK_CHAT_TEMPLATE = (
    "{% for m in messages %}{{ '### ' ~ (m['role'] | capitalize) ~ ':\\n' ~ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '### Assistant:\\n' }}{% endif %}"
)


@dataclass
class Rendered:
    """One example as text.

    Attributes:
        text: Everything the model reads in training.
        spans: Character spans `[start, end)` of `text` whose tokens get a loss (the responses).
        prompt: The text that generation starts from (everything before the last response).
        reference: The last response, the target of generation.
        special: Whether `text` already holds the special tokens (chat templates) or the tokenizer adds them.
    """

    text: str
    spans: list[tuple[int, int]] = field(default_factory=list)
    prompt: str = ""
    reference: str = ""
    special: bool = False


def plain(prompt: str, completion: str | None) -> Rendered:
    """A raw-text example: prompt then completion, the completion trained."""
    completion = completion or ""
    return Rendered(prompt + completion, [(len(prompt), len(prompt) + len(completion))], prompt, completion)


def alpaca_prompt(instruction: str, input_text: str | None) -> str:
    """The standard Stanford Alpaca prompt (the variant without `### Input:` when the input is empty)."""
    if input_text and input_text.strip():
        return ALPACA_PROMPT.format(instruction=instruction, input=input_text)
    return ALPACA_PROMPT_NO_INPUT.format(instruction=instruction)


class ChatRenderer:
    """Renders conversations with the tokenizer's chat template, or `template` when given or when it has none.

    Args:
        tokenizer: The backbone's tokenizer.
        template: A Jinja chat template overriding the tokenizer's own.
    """

    def __init__(self, tokenizer: Any, template: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.template = template or (None if getattr(tokenizer, "chat_template", None) else FALLBACK_CHAT_TEMPLATE)

    def text(self, messages: list[Message], generation_prompt: bool = False) -> str:
        return self.tokenizer.apply_chat_template(
            messages, chat_template=self.template, add_generation_prompt=generation_prompt, tokenize=False
        )

    def render(self, messages: list[Message], row_id: str, where: str) -> Rendered:
        """Full text plus the span of every assistant turn; the last assistant turn is the generation target."""
        try:
            return self._render(messages, row_id, where)
        except TemplateError as err:  # templates refuse what they cannot render (`raise_exception(...)`)
            raise UserError(f"row '{row_id}' in {where}: the chat template refuses the conversation ({err}); fix "
                            "the row or set data.chat_template") from err

    def _render(self, messages: list[Message], row_id: str, where: str) -> Rendered:
        turns = [i for i, m in enumerate(messages) if m.get("role") == "assistant"]
        if not turns:
            return Rendered(self.text(messages, True), [], self.text(messages, True), "", special=True)
        full = self.text(messages)
        spans, prompt = [], ""
        for i in turns:
            prompt = self._prefix(messages[:i], True, full, row_id, where)
            end = self._prefix(messages[: i + 1], False, full, row_id, where)
            spans.append((len(prompt), len(end)))
        last = messages[turns[-1]]["content"]
        return Rendered(full, spans, prompt, last, special=True)

    def _prefix(self, messages: list[Message], generation_prompt: bool, full: str, row_id: str, where: str) -> str:
        text = self.text(messages, generation_prompt)
        if not full.startswith(text):
            raise UserError(
                f"row '{row_id}' in {where}: the chat template does not render the conversation's first turns as a "
                "prefix of the whole (it rewrites earlier turns), so the assistant turns cannot be located; set "
                "data.chat_template to a template that renders turn by turn"
            )
        return text


def check_messages(messages: Any, row_id: str, where: str, column: str) -> list[Message]:
    """A conversation as `{role, content}` dicts with text values, or an error naming the row and message."""
    if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
        raise UserError(f"row '{row_id}' in {where}: column '{column}' must hold a list of {{role, content}} "
                        f"messages, not {type(messages).__name__}; fix the row or set data.messages_column")
    if not messages:
        raise UserError(f"row '{row_id}' in {where}: column '{column}' holds no messages; fix the row or drop it")
    for i, message in enumerate(messages):
        if not isinstance(message.get("role"), str) or not isinstance(message.get("content"), str):
            raise UserError(f"row '{row_id}' in {where}: message {i} of column '{column}' needs a text 'role' and "
                            f"'content' (it has {sorted(k for k, v in message.items() if v is not None)}); fix the row")
        if message["role"] not in ROLES:
            raise UserError(f"row '{row_id}' in {where}: message {i} of column '{column}' has role "
                            f"{message['role']!r}, which chat templates do not know; use 'system', 'user', "
                            "'assistant' or 'tool' (ShareGPT's 'human' is 'user', its 'gpt' is 'assistant')")
    first = next((i for i, m in enumerate(messages) if m["role"] != "system"), None)
    if first is not None and messages[first]["role"] == "assistant":
        raise UserError(f"row '{row_id}' in {where}: message {first} of column '{column}' is the assistant's, before "
                        "any user turn, so it answers nothing; start the conversation with a user turn (after any "
                        "system turn) or drop that message")
    return messages


def with_system(messages: list[Message], system_prompt: str | None) -> list[Message]:
    """Prepend the system prompt unless the conversation starts with its own."""
    if not system_prompt or (messages and messages[0].get("role") == "system"):
        return list(messages)
    return [{"role": "system", "content": system_prompt}, *messages]


def history_messages(history: Any) -> list[Message]:
    """LLaMA-Factory style history (a list of [user, assistant] pairs) as messages."""
    out: list[Message] = []
    for pair in history or []:
        user, assistant = pair
        out += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return out


def fill_template(template: str, row: dict[str, Any]) -> str:
    """`template.format(**row)` with list values (such as test asserts) joined by newlines."""
    values = {k: "\n".join(map(str, v)) if isinstance(v, list) else v for k, v in row.items()}
    try:
        return template.format(**values)
    except KeyError as err:
        raise UserError(
            f"data.prompt_template names column {err} which the data lacks; columns are {sorted(row)}"
        ) from err
