"""The three preference row shapes, and the prompt a pair of full texts shares.

Each row becomes a `Pair`: the prompt and the two completions, as text (explicit and implicit rows) or as
`{role, content}` messages (conversational rows, rendered with the chat template by `lit_ft.tasks.preference.tokens`).

- explicit: `prompt`, `chosen`, `rejected` columns, the completions continuing the prompt;
- implicit: `chosen` / `rejected` full texts (Anthropic HH-RLHF); the prompt is their longest common prefix cut
  after the last assistant marker in it (`\\n\\nAssistant:`), or, with no marker, at the last whitespace in it;
- conversational: `chosen` / `rejected` message lists, with an optional `prompt` message list before them; the
  completion is the last (assistant) turn, everything before it the prompt, which both sides must share.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from lit_ft.errors import UserError
from lit_ft.rows import ROW, row_name
from lit_ft.tasks.sft.render import Message, check_messages

Format = Literal["auto", "explicit", "implicit", "conversational"]
HH_ASSISTANT = "\n\nAssistant:"


SKIP_HINT = ", or set data.drop_untrainable: true to skip such pairs"


class NothingToPrefer(UserError):
    """A pair with an empty answer or two equal ones: a data-quality fault `data.drop_untrainable` may skip (a
    missing value or a malformed row stays an error)."""


@dataclass(frozen=True)
class Pair:
    """One preference pair: text (`messages` False) or message lists (`messages` True)."""

    prompt: Any
    chosen: Any
    rejected: Any
    messages: bool = False


@dataclass(frozen=True)
class PairColumns:
    """The column settings of a preference file and the assistant marker of implicit-prompt texts."""

    prompt_column: str = "prompt"
    chosen_column: str = "chosen"
    rejected_column: str = "rejected"
    assistant_marker: str = HH_ASSISTANT
    completion_column: str = "completion"
    text_column: str = "text"

    def detect(self, rows: dict[str, list[Any]], where: str) -> str:
        """The shape the columns (and the first chosen value) imply, for `format: auto`."""
        if self.chosen_column not in rows or self.rejected_column not in rows:
            found = sorted(c for c in rows if c != "id" and not c.startswith("_"))
            raise UserError(
                f"cannot tell the preference data shape of {where} from its columns {found}: expected "
                f"'{self.chosen_column}' and '{self.rejected_column}' (plus '{self.prompt_column}' for an explicit "
                "prompt); set data.chosen_column / data.rejected_column / data.prompt_column, or data.format"
            )
        first = next((v for v in rows[self.chosen_column] if v is not None), None)
        if isinstance(first, list):
            return "conversational"
        return "explicit" if self.prompt_column in rows else "implicit"

    def required(self, fmt: str) -> dict[str, str | None]:
        """The column settings a shape reads (for `TaskDataModule.require_columns`)."""
        found: dict[str, str | None] = {"chosen_column": self.chosen_column, "rejected_column": self.rejected_column}
        if fmt == "explicit":
            found["prompt_column"] = self.prompt_column
        return found

    def pair(self, row: dict[str, Any], fmt: str, where: str) -> Pair:
        """The row's pair, checked: present, non-empty completions that differ, whole conversations."""
        name = f"{row_name(row['id'], row[ROW])} in {where}"
        chosen, rejected = self._value(row, "chosen_column", name), self._value(row, "rejected_column", name)
        if fmt == "conversational":
            return self._conversation(row, chosen, rejected, name, where)
        chosen, rejected = self._text(chosen, "chosen_column", name), self._text(rejected, "rejected_column", name)
        if chosen == rejected:
            raise NothingToPrefer(f"{name}: '{self.chosen_column}' equals '{self.rejected_column}', so the pair "
                                  f"prefers nothing; fix the row or drop it{SKIP_HINT}")
        if fmt == "explicit":
            prompt = self._text(self._value(row, "prompt_column", name), "prompt_column", name, empty_ok=True)
            pair = Pair(prompt, chosen, rejected)
        else:
            pair = Pair(*implicit_prompt(chosen, rejected, self.assistant_marker))
        self._check_completions(pair, name)
        return pair

    def single(self, row: dict[str, Any], where: str) -> tuple[str | list[Message], str | list[Message] | None]:
        """A predict row's (prompt, completion or None): a prompt (text or messages) with an optional completion,
        or, without a prompt, a whole text to score (an empty prompt, the text its completion)."""
        name = f"{row_name(row['id'], row[ROW])} in {where}"
        prompt, completion = row.get(self.prompt_column), row.get(self.completion_column)
        if prompt is None:
            text = row.get(self.text_column)
            if not isinstance(text, str) or not text.strip():
                raise UserError(f"{name} has no prompt ('{self.prompt_column}') and no text ('{self.text_column}'); "
                                "fill one or drop the row")
            return "", text
        if isinstance(prompt, str):
            return prompt, None if completion is None else self._text(completion, "completion_column", name)
        head = check_messages(prompt, row["id"], where, self.prompt_column)
        if completion is None:
            return head, None
        if not isinstance(completion, list):
            check_messages(completion, row["id"], where, self.completion_column)
        whole = check_messages([*head, *completion], row["id"], where, self.completion_column)
        return whole[: len(head)], whole[len(head) :]

    def _value(self, row: dict[str, Any], setting: str, name: str) -> Any:
        column = getattr(self, setting)
        if row.get(column) is None:
            raise UserError(f"{name} has no {setting} '{column}' value; fill it or drop the row")
        return row[column]

    def _text(self, value: Any, setting: str, name: str, empty_ok: bool = False) -> str:
        column = getattr(self, setting)
        if not isinstance(value, str):
            raise UserError(f"{name}: {setting} '{column}' holds {type(value).__name__}, not text; fix the row, or "
                            "set data.format: conversational for message lists")
        if not empty_ok and not value.strip():
            raise NothingToPrefer(f"{name}: {setting} '{column}' is empty, so there is nothing to prefer; fill it or "
                                  f"drop the row{SKIP_HINT}")
        return value

    def _check_completions(self, pair: Pair, name: str) -> None:
        for side, text in (("chosen", pair.chosen), ("rejected", pair.rejected)):
            if not text.strip():
                raise NothingToPrefer(
                    f"{name}: the {side} completion is empty once the prompt both texts share is taken off "
                    f"({text!r} after {pair.prompt[-40:]!r}); give the row a different {side} answer, or an "
                    f"explicit '{self.prompt_column}' column{SKIP_HINT}"
                )

    def _conversation(self, row: dict[str, Any], chosen: Any, rejected: Any, name: str, where: str) -> Pair:
        prompt = row.get(self.prompt_column)
        if prompt is not None and not isinstance(prompt, list):
            check_messages(prompt, row["id"], where, self.prompt_column)  # says what a message list is
        sides = []
        for setting, value in (("chosen_column", chosen), ("rejected_column", rejected)):
            column = getattr(self, setting)
            if not isinstance(value, list):
                check_messages(value, row["id"], where, column)
            # the completion lists alone start with the assistant: checked after their prompt
            messages = check_messages([*(prompt or []), *value], row["id"], where, column)
            last = messages[-1]
            if last["role"] != "assistant":
                raise UserError(f"{name}: the last turn of {setting} '{column}' is the {last['role']}'s, not the "
                                "assistant's, so there is no answer to prefer; end the conversation with the "
                                "assistant turn or drop the row")
            if not last["content"].strip():
                raise NothingToPrefer(f"{name}: the last (assistant) turn of {setting} '{column}' is empty; fill it "
                                      f"or drop the row{SKIP_HINT}")
            sides.append(messages)
        if sides[0][:-1] != sides[1][:-1]:
            raise UserError(f"{name}: '{self.chosen_column}' and '{self.rejected_column}' differ before their last "
                            "turn, so they do not answer the same conversation; make them share every turn but "
                            f"the last, or give the shared turns in '{self.prompt_column}'")
        if sides[0][-1] == sides[1][-1]:
            raise NothingToPrefer(f"{name}: the last turns of '{self.chosen_column}' and '{self.rejected_column}' "
                                  f"are equal, so the pair prefers nothing; fix the row or drop it{SKIP_HINT}")
        return Pair(sides[0][:-1], [sides[0][-1]], [sides[1][-1]], messages=True)


def implicit_prompt(chosen: str, rejected: str, marker: str = HH_ASSISTANT) -> tuple[str, str, str]:
    """(prompt, chosen completion, rejected completion) of two full texts: their longest common prefix, cut just
    after the last `marker` in it (the assistant turn both answer), else before the last whitespace in it (so a
    shared first word or part of one stays with the completions)."""
    n = 0
    for a, b in zip(chosen, rejected, strict=False):
        if a != b:
            break
        n += 1
    common = chosen[:n]
    at = common.rfind(marker) if marker else -1
    if at >= 0:
        cut = at + len(marker)
    else:
        cut = max((i for i, ch in enumerate(common) if ch.isspace()), default=0)
    return chosen[:cut], chosen[cut:], rejected[cut:]
