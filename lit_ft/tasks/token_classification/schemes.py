"""Tag schemes (IOB1, IOB2 = BIO, BIOES): reading entities exactly as conlleval / seqeval do, and rewriting tags.

Every scheme is read with one parser, a port of `seqeval.metrics.sequence_labeling.get_entities` (seqeval's
default mode, which follows conlleval): an `I-` tag after `O` or after another type starts an entity, `B-`
always starts one, `E-`/`S-` end one. Converting between schemes is "parse the entities, write them in the
target scheme", so a conversion never changes which entities a sentence holds.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal, NamedTuple

Scheme = Literal["IOB1", "IOB2", "BIO", "BIOES", "none"]
ALIASES = {"BIO": "IOB2"}
PREFIXES: dict[str, tuple[str, ...]] = {"IOB1": ("B", "I"), "IOB2": ("B", "I"), "BIOES": ("B", "I", "E", "S")}
_ENDS = {("B", "B"), ("B", "S"), ("B", "O"), ("I", "B"), ("I", "S"), ("I", "O")}
_STARTS = {("E", "E"), ("E", "I"), ("S", "E"), ("S", "I"), ("O", "E"), ("O", "I")}


class Entity(NamedTuple):
    """An entity: its type and token span `[start, end)`."""

    type: str
    start: int
    end: int


def normalize_scheme(scheme: str) -> str:
    """The canonical scheme name (`BIO` is `IOB2`)."""
    return ALIASES.get(scheme, scheme)


def split_tag(tag: str) -> tuple[str, str]:
    """(prefix, type) as seqeval reads a tag: the first character, and what follows the first '-' ('_' if none)."""
    return tag[0], tag[1:].split("-", maxsplit=1)[-1] or "_"


def get_entities(tags: Sequence[str]) -> list[Entity]:
    """The entities of one sentence, in order; identical to seqeval's `get_entities` (spans made end-exclusive)."""
    entities = []
    prev_tag, prev_type, begin = "O", "", 0
    for i, chunk in enumerate([*tags, "O"]):
        tag, type_ = split_tag(chunk)
        ends = prev_tag in ("E", "S") or (prev_tag, tag) in _ENDS or (prev_tag not in ("O", ".") and prev_type != type_)
        if ends:
            entities.append(Entity(prev_type, begin, i))
        if tag in ("B", "S") or (prev_tag, tag) in _STARTS or (tag not in ("O", ".") and prev_type != type_):
            begin = i
        prev_tag, prev_type = tag, type_
    return entities


def render(entities: Iterable[Entity], length: int, scheme: str) -> list[str]:
    """Write non-overlapping entities as the tags of a `length`-token sentence in `scheme`."""
    tags = ["O"] * length
    prev: Entity | None = None
    for e in entities:
        n = e.end - e.start
        if scheme == "BIOES":
            prefixes = ["S"] if n == 1 else ["B", *["I"] * (n - 2), "E"]
        elif scheme == "IOB1":  # B- only where an entity directly follows one of the same type
            first = "B" if prev is not None and prev.end == e.start and prev.type == e.type else "I"
            prefixes = [first, *["I"] * (n - 1)]
        else:
            prefixes = ["B", *["I"] * (n - 1)]
        tags[e.start : e.end] = [f"{p}-{e.type}" for p in prefixes]
        prev = e
    return tags


def convert(tags: Sequence[str], scheme: str) -> list[str]:
    """Rewrite a sentence's tags in `scheme` (same entities, as the parser reads them)."""
    return render(get_entities(tags), len(tags), normalize_scheme(scheme))


def invalid_tag(tags: Iterable[str], scheme: str) -> str | None:
    """The first tag that `scheme` does not allow (prefix not one of its own, or no type), else None."""
    allowed = PREFIXES[normalize_scheme(scheme)]
    for tag in tags:
        if tag != "O" and (len(tag) < 3 or tag[1] != "-" or tag[0] not in allowed):
            return tag
    return None


def label_set(types: Iterable[str], scheme: str) -> list[str]:
    """Model labels of a scheme: `O`, then each type (sorted) with every prefix of the scheme."""
    prefixes = PREFIXES[normalize_scheme(scheme)]
    return ["O", *[f"{p}-{t}" for t in sorted(set(types)) for p in prefixes]]


def continuation(label: str) -> str:
    """The label of a word's later sub-tokens when all are labelled: `B-X` becomes `I-X`, others stay."""
    return f"I{label[1:]}" if label.startswith("B-") else label
