"""torchmetrics' private names that lit_ft uses, each with the public API it waits for (`ACCESSES`, checked by
`tests/test_library_internals.py`)."""

from __future__ import annotations

from torchmetrics.wrappers import ClasswiseWrapper

from lit_ft.adapters.library_access import Access

ACCESSES = [
    Access("torchmetrics.wrappers.ClasswiseWrapper", "_prefix", "instance attribute", "none yet: the logged "
           "keys of a ClasswiseWrapper", "monitor"),
    Access("torchmetrics.wrappers.ClasswiseWrapper", "_postfix", "instance attribute", "none yet: the logged "
           "keys of a ClasswiseWrapper", "monitor"),
]


def classwise_affixes(metric: ClasswiseWrapper) -> tuple[str, str]:
    """The prefix and postfix around each label in a ClasswiseWrapper's logged keys."""
    return metric._prefix or "", metric._postfix or ""
