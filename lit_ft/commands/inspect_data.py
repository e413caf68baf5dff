"""`lit_ft inspect-data`: what the model will see, before any training.

Reads the recipe as `lit_ft fit` does (`lit_ft.commands.recipe`) and tokenizes the splits with the task's own encoding
(cached by `datasets`, so the fit that follows reuses it); builds no model. Everything task-specific comes from
the data module's contract (`label_counts`, `example_keys`, `show_example`), so plugins get the report too.
"""

from __future__ import annotations

import hashlib
import statistics
from typing import Any

from lit_ft.commands.preflight import recipe_argv, recipe_parser
from lit_ft.commands.text_histogram import length_histogram
from lit_ft.data_summary import SPLITS, format_counts
from lit_ft.errors import UserError, one_line
from lit_ft.overlap import batched, normalised

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
    from lit_ft.commands.recipe import read_recipe
    from lit_ft.hub import require_hub_data

    recipe = read_recipe(recipe_argv(args.config, rest), "inspect-data")
    require_hub_data(recipe.cfg)  # one line now, not minutes of hub retries
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
        notes = [f"{inputs:,} inputs"] if inputs is not None and inputs != len(raw) else []
        notes += data.split_notes(s) if s in features and hasattr(data, "split_notes") else []
        parts.append(f"{s} {len(raw):,}" + (f" ({'; '.join(notes)})" if notes else ""))
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


def _hashes(keys: list[str]) -> list[str]:
    return [hashlib.blake2b(k.encode("utf-8"), digest_size=16).hexdigest() for k in keys]


def as_tokenizer_reads(tokenizer: Any, key: str) -> str:
    """An input key as the tokenizer reads it: its normaliser (lower case and accents for uncased models), then
    each field (tab-separated) without surrounding whitespace, which tokenizing drops."""
    normalizer = getattr(getattr(tokenizer, "backend_tokenizer", None), "normalizer", None)
    parts = [p.strip() for p in key.split("\t")]
    return "\t".join(normalizer.normalize_str(p).strip() if normalizer is not None else p for p in parts)


def _duplicates(data: Any, loaded: dict[str, Any]) -> list[str]:
    """Exact and near duplicate inputs inside each split, inputs with different labels, and inputs of
    validation/test/predict already in train (leakage), compared as `fit`'s warning compares them (`lit_ft.overlap`:
    case and spacing ignored). Each split's inputs are read once (`example_keys`)."""
    raw_keys = {s: batched(data.example_keys, raw) or [] for s, raw in loaded.items()}
    lines = ["", "duplicates (same input, as the task compares examples; across splits, case and spacing ignored):"]
    for s, keys in raw_keys.items():
        found = _hashes(keys)
        extra = len(found) - len(set(found))
        normal = _hashes([as_tokenizer_reads(data.tokenizer, k) for k in keys])
        near = len(set(found)) - len(set(normal))
        lines.append(f"  {s}: {extra:,} of {len(found):,} rows repeat an earlier row of the split"
                     + (f"; {near:,} more once normalised as the tokenizer reads them (case for an uncased "
                        "model, surrounding whitespace)" if near else ""))
        labels = batched(data.example_labels, loaded[s]) if s != "predict" else None
        lines += _conflicts(s, normal, labels, loaded[s])
    across = {s: [normalised(k) for k in keys] for s, keys in raw_keys.items()}
    train = set(across.get("train", []))
    for s in (x for x in (*EVAL_SPLITS, "predict") if x in across and train):
        shared = [i for i, k in enumerate(across[s]) if k in train]
        lines.append(f"  {s} rows also in train: {len(shared):,} of {len(across[s]):,}{_ids(loaded[s], shared)}")
    return lines


def _conflicts(split: str, keys: list[str], labels: list[str] | None, raw: Any) -> list[str]:
    """`train: 2 inputs appear with different labels (ids 3, 7)`: the rows of such inputs, by (normalised) input."""
    if labels is None:
        return []
    seen: dict[str, set[str]] = {}
    for key, label in zip(keys, labels, strict=True):
        seen.setdefault(key, set()).add(label)
    mixed = {k for k, found in seen.items() if len(found) > 1}
    if not mixed:
        return []
    rows = [i for i, k in enumerate(keys) if k in mixed]
    inputs = "1 input appears" if len(mixed) == 1 else f"{len(mixed):,} inputs appear"
    return [f"  {split}: {inputs} with different labels, in {len(rows):,} rows"
            f"{_ids(raw, rows)}: fix or drop them"]


def _ids(raw: Any, rows: list[int]) -> str:
    """` (ids 3, 7, ...)` for the first rows; empty for none."""
    if not rows:
        return ""
    ids = [str(raw[i]["id"]) for i in rows[:MAX_IDS_SHOWN]]
    return f" (ids {', '.join(ids)}{', ...' if len(rows) > MAX_IDS_SHOWN else ''})"


def _examples(data: Any, ds: Any, split: str, n: int) -> list[str]:
    if n == 0 or ds is None:
        return []
    lines = ["", f"examples ({split}, the first {min(n, len(ds))} inputs as encoded for the model):"]
    for i in range(min(n, len(ds))):
        feature = ds[i]
        lines.append(f"  id {feature['id']} ({feature['length']} tokens)")
        lines += [f"    {line}" for line in data.show_example(feature)]
    return lines
