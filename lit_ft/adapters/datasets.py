"""Hugging Face datasets' private names that lit_ft uses, each with the public API it waits for (`ACCESSES`,
checked by `tests/test_library_internals.py`)."""

from __future__ import annotations

from typing import Any

from lit_ft.adapters.library_access import Access

ACCESSES = [
    Access("datasets.Dataset", "_fingerprint", "instance attribute", "none yet: the dataset's content hash, "
           "which the tokenized-features cache key includes", "datamodule"),
]


def dataset_fingerprint(dataset: Any) -> str:
    """The hash datasets keeps of a dataset's content and the transforms that made it."""
    return str(dataset._fingerprint)
