"""Errors in what the user gave lit_ft: printed as one actionable line instead of a traceback.

Raise `UserError` (or a subclass) wherever a config value, a data file, a checkpoint or a path is wrong, with a
message that says what is wrong, where (file, key, column, value) and the fix. `lit_ft.commands.cli.main` prints it as
`lit_ft: error: <message>` and exits with status 2; `--debug` or `LIT_FT_DEBUG=1` shows the full traceback.
"""

from __future__ import annotations

import os

EXIT_USER_ERROR = 2
DEBUG_FLAG = "--debug"
DEBUG_ENV = "LIT_FT_DEBUG"


class UserError(ValueError):
    """A problem with the user's input (config, data, checkpoint, paths) that they can fix.

    Subclasses ValueError so code and tests that expect ValueError keep working.
    """


def debug_requested(argv: list[str]) -> bool:
    """`--debug` on the command line or LIT_FT_DEBUG set to a true value."""
    return DEBUG_FLAG in argv or os.environ.get(DEBUG_ENV, "").lower() in ("1", "true", "yes")


def user_error_in_chain(err: BaseException) -> UserError | None:
    """The first UserError in an exception's cause/context chain (libraries wrap ours), if any."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, UserError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def one_line(message: str) -> str:
    """Messages are printed on one line: collapse newlines and runs of spaces."""
    return " ".join(message.split())


class InternalError(RuntimeError):
    """A broken invariant of lit_ft itself (not the user's input): raised instead of writing a wrong output."""
