"""The three SFT row shapes as transforms: one row -> the conversation it holds (messages).

Each shape is a small typed object holding its column settings; `SFTData` builds one of each from its arguments,
picks one per split (`format`, or `detect_format` from the columns), and renders the messages with the chat template
or as plain text (`lit_ft.tasks.sft.render`). A shape names the settings its columns come from, so a missing column
fails with the setting to change.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from lit_ft.errors import UserError
from lit_ft.tasks.sft.render import Message, alpaca_prompt, check_messages, fill_template, history_messages

Format = Literal["auto", "prompt_completion", "alpaca", "chat"]


@dataclass(frozen=True)
class ChatRows:
    """Rows holding a whole conversation: a list of `{role, content}` messages."""

    messages_column: str = "messages"
    name = "chat"

    def required(self, split: str) -> dict[str, str | None]:
        return {"messages_column": self.messages_column}

    def response(self, row: dict[str, Any]) -> tuple[str, str] | None:
        """The (setting, column) of the row's response when the shape has one column for it."""
        return None

    def messages(self, row: dict[str, Any], where: str, templated: bool) -> list[Message]:
        return check_messages(row[self.messages_column], row["id"], where, self.messages_column)

    def blank_response(self, row: dict[str, Any]) -> str | None:
        """The first assistant turn with no text (of a checked conversation), as `message 1 of column 'messages'`."""
        for i, message in enumerate(row[self.messages_column]):
            if message["role"] == "assistant" and not message["content"].strip():
                return f"message {i} of column '{self.messages_column}'"
        return None


@dataclass(frozen=True)
class TurnRows:
    """Rows holding one prompt and its response, optionally after earlier `[user, assistant]` pairs (`history`).

    `prompt_template` (a format string over the row's columns) replaces the prompt when set.
    """

    prompt_setting: str
    prompt_column: str
    response_setting: str
    response_column: str
    history_column: str | None = None
    prompt_template: str | None = None

    def required(self, split: str) -> dict[str, str | None]:
        found = {self.prompt_setting: None if self.prompt_template else self.prompt_column}
        if split != "predict":  # predict rows need no response: there is nothing to compare with
            found[self.response_setting] = self.response_column
        return found

    def response(self, row: dict[str, Any]) -> tuple[str, str] | None:
        return self.response_setting, self.response_column

    def blank_response(self, row: dict[str, Any]) -> str | None:
        """The response setting and column when the row's response is blank (spaces only count as blank)."""
        answer = row.get(self.response_column)
        blank = isinstance(answer, str) and not answer.strip()
        return f"{self.response_setting} '{self.response_column}'" if blank else None

    def prompt(self, row: dict[str, Any], templated: bool) -> str:
        return str(row[self.prompt_column]) if self.prompt_column in row else ""

    def messages(self, row: dict[str, Any], where: str, templated: bool) -> list[Message]:
        """History (with a chat template only), the user's prompt, and the response when the row has one."""
        prompt = fill_template(self.prompt_template, row) if self.prompt_template else self.prompt(row, templated)
        history = history_messages(row.get(self.history_column or "")) if templated else []
        answer = row.get(self.response_column)
        return [*history, {"role": "user", "content": prompt},
                *([] if answer is None else [{"role": "assistant", "content": answer}])]


@dataclass(frozen=True)
class PromptCompletionRows(TurnRows):
    prompt_setting: str = "prompt_column"
    prompt_column: str = "prompt"
    response_setting: str = "completion_column"
    response_column: str = "completion"
    name = "prompt_completion"


@dataclass(frozen=True)
class AlpacaRows(TurnRows):
    """Alpaca rows: the prompt is the instruction plus the optional input, in the Stanford Alpaca prompt when
    rendered as plain text, joined by a blank line as the user turn of a chat template."""

    prompt_setting: str = "instruction_column"
    prompt_column: str = "instruction"
    response_setting: str = "output_column"
    response_column: str = "output"
    input_column: str | None = "input"
    name = "alpaca"

    def prompt(self, row: dict[str, Any], templated: bool) -> str:
        instruction, extra = row[self.prompt_column], row.get(self.input_column or "")
        if not templated:
            return alpaca_prompt(instruction, extra)
        return "\n\n".join(p for p in (instruction, extra) if p and p.strip())


RowFormat = ChatRows | PromptCompletionRows | AlpacaRows


def detect_format(columns: list[str], chat: ChatRows, alpaca: AlpacaRows, pc: PromptCompletionRows) -> str:
    """The shape implied by the columns (`format: auto`): chat, else alpaca, else prompt_completion."""
    if chat.messages_column in columns:
        return "chat"
    if alpaca.prompt_column in columns and alpaca.response_column in columns:
        return "alpaca"
    if pc.prompt_column in columns and pc.response_column in columns:
        return "prompt_completion"
    raise UserError(
        f"cannot tell the data shape from the columns {sorted(c for c in columns if c != 'id' and c[:1] != '_')}: "
        "expected a "
        f"'{chat.messages_column}' column (chat), '{alpaca.prompt_column}' + '{alpaca.response_column}' (alpaca) or "
        f"'{pc.prompt_column}' + '{pc.response_column}' (prompt_completion); set data.format and the column names "
        "(data.messages_column, data.prompt_column, ...)"
    )
