"""Precomputed reference log-probabilities as feature columns, stored in datasets' cache per reference model.

The `dpo` task's `precompute_ref_log_probs` scores every pair once with the reference model; the two columns join the
split's tokenized features (`PreferenceData.with_reference`), and batches carry them. Stored under a key of the
features (data, tokenizer, settings) and of the model (`model_key`), a later run on the same data with the same
reference model finds them (`PreferenceData.load_reference`), and another model never does.
"""

from __future__ import annotations

from typing import Any

import datasets
from datasets.fingerprint import Hasher

from lit_ft.adapters.datasets import dataset_fingerprint
from lit_ft.errors import InternalError

REFERENCE_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")


class _NotCached(Exception):
    """Raised by the map function of `cached_reference` when datasets' cache does not hold the columns."""


def _without(ds: datasets.Dataset) -> datasets.Dataset:
    return ds.remove_columns([c for c in REFERENCE_COLUMNS if c in ds.column_names])


def _key(ds: datasets.Dataset, model_key: str) -> str:
    return str(Hasher.hash((dataset_fingerprint(ds), REFERENCE_COLUMNS, model_key)))


def with_reference_columns(ds: datasets.Dataset, chosen: list[float], rejected: list[float],
                           model_key: str | None, split: str) -> datasets.Dataset:
    """`ds` with the two columns (replacing earlier ones); with `model_key` also written to datasets' cache."""
    if len(chosen) != len(ds) or len(rejected) != len(ds):
        raise InternalError(f"with_reference got {len(chosen)} chosen and {len(rejected)} rejected log-probs for "
                            f"the {len(ds)} features of {split}; give one per feature, in feature order")
    ds = _without(ds)
    values = dict(zip(REFERENCE_COLUMNS, ([float(v) for v in chosen], [float(v) for v in rejected]), strict=True))
    if model_key is None:
        for column, column_values in values.items():
            ds = ds.add_column(column, column_values)  # type: ignore[arg-type]
        return ds
    return ds.map(lambda _, i: {c: v[i] for c, v in values.items()}, with_indices=True,
                  new_fingerprint=_key(ds, model_key), load_from_cache_file=False,
                  desc=f"storing reference log-probs of {split}")


def cached_reference(ds: datasets.Dataset, model_key: str) -> datasets.Dataset | None:
    """`ds` with the columns `with_reference_columns` stored for it and `model_key`; None when not cached."""
    ds = _without(ds)

    def missing(_: dict[str, Any]) -> dict[str, Any]:
        raise _NotCached

    try:  # datasets loads a cached result without calling the function
        return ds.map(missing, new_fingerprint=_key(ds, model_key))
    except _NotCached:
        return None
