"""`lit_ft inspect-data`: what the model will see, before any training.

Reads the recipe as `lit_ft fit` does (`lit_ft.recipe`) and tokenizes the splits with the task's own encoding
(cached by `datasets`, so the fit that follows reuses it); builds no model. Everything task-specific comes from
the data module's contract (`label_counts`, `example_keys`, `show_example`), so plugins get the report too.
"""

from __future__ import annotations

import hashlib
import statistics
from typing import Any

from lit_ft.data_summary import SPLITS, format_counts
from lit_ft.errors import UserError, one_line
from lit_ft.overlap import input_keys
from lit_ft.preflight import recipe_argv, recipe_parser
from lit_ft.text_histogram import length_histogram

MAX_IDS_SHOWN = 5
EVAL_SPLITS = ("validation", "test")


def main(argv: list[str]) -> None:
    parser = recipe_parser(
        "lit_ft inspect-data",
        "What the model will see: rows, labels, token lengths, duplicates and train/eval overlap, "
        "and examples rendered through the task's encoding. No model is built, nothing trains.",
        "--data.init_args.max_length 256",
    )
    parser.add_argument("--split", choices=SPLITS, default="train", help="split to show examples of")
    parser.add_argument("--n", type=int, default=5, help="examples to show (0: none)")
    args, rest = parser.parse_known_args(argv)
    if args.n < 0:
        raise UserError(f"--n must be 0 or more (got {args.n})")
    from lit_ft.recipe import read_recipe

    recipe = read_recipe(recipe_argv(args.config, rest), "inspect-data")
    print("\n".join(report(recipe.data, args.split, args.n)))


def report(data: Any, split: str, n: int) -> list[str]:
    """The whole report as lines, section by section."""
    loaded = {s: raw for s in SPLITS if (raw := data.raw(s)) is not None}
    if split not in loaded:
        raise UserError(f"--split {split}: the recipe has no {split} split (it has {', '.join(loaded)})")
    features, problems = {}, {}
    for s in loaded:
        try:
            features[s] = data.features(s)
        except UserError as err:  # shown in the report: the labels section often says why
            problems[s] = one_line(str(err))
    lines = [f"data: {type(data).__name__} (task {data.task_name}), tokenizer {data.tokenizer_name}, "
             f"max_length {data.max_length}"]
    lines += _rows(data, loaded, features)
    lines += [f"  cannot encode {s}: {p}" for s, p in problems.items()]
    lines += _labels(data, loaded)
    lines += _lengths(data, features)
    lines += _duplicates(data, loaded)
    lines += _examples(data, features.get(split), split, n)
    return lines


def _rows(data: Any, loaded: dict[str, Any], features: dict[str, Any]) -> list[str]:
    parts = []
    for s, raw in loaded.items():
        inputs = len(features[s]) if s in features else None
        extra = f" ({inputs:,} inputs)" if inputs is not None and inputs != len(raw) else ""
        parts.append(f"{s} {len(raw):,}{extra}")
    return ["", "rows: " + ", ".join(parts)]


def _labels(data: Any, loaded: dict[str, Any]) -> list[str]:
    counts = {s: _label_counts(data, s) for s in loaded if s != "predict"}
    if not any(counts.values()):
        return []
    width = max(map(len, counts))
    lines = ["", "labels:"]
    lines += [f"  {s:<{width}}  {format_counts(c, shown=12) if c else '(none)'}" for s, c in counts.items()]
    train = set(counts.get("train", {}))
    for s in EVAL_SPLITS:
        unseen = sorted(set(counts.get(s, {})) - train)
        if unseen and "train" in counts:
            lines.append(f"  in {s} but not in train: {', '.join(unseen)} (the model never learns them)")
    return lines


def _label_counts(data: Any, split: str) -> dict[str, int]:
    try:
        return dict(data.label_counts(split))
    except UserError:  # counted from the features, which could not be made: the rows section said why
        return {}


def _lengths(data: Any, features: dict[str, Any]) -> list[str]:
    limit = data.max_length
    limits = ", ".join(f"{k} {v}" for k, v in data.length_settings().items())
    lines = ["", f"token lengths (input tokens per input; max_length {limit}):"]
    for s, ds in features.items():
        lengths = list(ds["length"])
        if not lengths:
            lines.append(f"  {s}: no inputs")
            continue
        cut = data.cut_inputs(s)
        lines.append(f"  {s}: {len(lengths):,} inputs, min {min(lengths)}, median {statistics.median(lengths):g}, "
                     f"max {max(lengths)}; {cut:,} truncated ({limits})")
        lines += [f"    {line}" for line in length_histogram(lengths, limit)]
    return lines


def _key_hashes(data: Any, split: str) -> list[str]:
    return [hashlib.blake2b(k.encode("utf-8"), digest_size=16).hexdigest() for k in input_keys(data, split) or []]


def _duplicates(data: Any, loaded: dict[str, Any]) -> list[str]:
    """Duplicate inputs inside each split, and inputs of validation/test already in train (leakage), compared as
    `fit`'s warning compares them (`lit_ft.overlap`)."""
    keys = {s: _key_hashes(data, s) for s in loaded}
    lines = ["", "duplicates (same input, as the task compares examples; case and spacing ignored):"]
    for s, found in keys.items():
        extra = len(found) - len(set(found))
        lines.append(f"  {s}: {extra:,} of {len(found):,} rows repeat an earlier row of the split")
    train = set(keys.get("train", []))
    for s in (x for x in (*EVAL_SPLITS, "predict") if x in keys and train):
        shared = [i for i, k in enumerate(keys[s]) if k in train]
        ids = [str(loaded[s][i]["id"]) for i in shared[:MAX_IDS_SHOWN]]
        more = ", ..." if len(shared) > MAX_IDS_SHOWN else ""
        where = f" (ids {', '.join(ids)}{more})" if shared else ""
        lines.append(f"  {s} rows also in train: {len(shared):,} of {len(keys[s]):,}{where}")
    return lines


def _examples(data: Any, ds: Any, split: str, n: int) -> list[str]:
    if n == 0 or ds is None:
        return []
    lines = ["", f"examples ({split}, the first {min(n, len(ds))} inputs as encoded for the model):"]
    for i in range(min(n, len(ds))):
        feature = ds[i]
        lines.append(f"  id {feature['id']} ({feature['length']} tokens)")
        lines += [f"    {line}" for line in data.show_example(feature)]
    return lines
