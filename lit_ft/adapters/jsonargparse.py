"""jsonargparse's private names that lit_ft uses, each with the public API it waits for (`ACCESSES`, checked by
`tests/test_library_internals.py`)."""

from __future__ import annotations

from typing import Any

from lit_ft.adapters.library_access import Access

ACCESSES = [
    Access("jsonargparse.typing.PositiveInt", "_restrictions", "class attribute", "none yet: telling a "
           "restricted number type (`restricted_number_type`) from another type", "domains, task_options"),
    Access("jsonargparse.typing.PositiveInt", "_expression", "class attribute", "none yet: a restricted number "
           "type's domain as text (`v>0`)", "domains"),
]


def is_restricted_number(kind: Any) -> bool:
    """Whether `kind` is one of jsonargparse's restricted number types."""
    return hasattr(kind, "_restrictions")


def restriction_text(kind: Any) -> str:
    """A restricted number type's domain as jsonargparse writes it (`v>0`)."""
    return str(kind._expression)
