"""Label names that would silently split one class in several: names that differ only by case or surrounding
spaces (`positive`, `positive `, `Positive`), numbers next to names (`1`, `positive`), and a single class.

The data modules call `check_discovered_labels` on the names they discover from the training split; names the
user lists in `data.label_names` are taken as meant.
"""

from __future__ import annotations

import re
from collections import defaultdict

from lit_ft.errors import UserError

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
SHOWN = 4


def confusable_groups(names: list[str]) -> list[list[str]]:
    """Groups of two or more names that are equal once spaces around them are stripped and case is ignored."""
    groups: defaultdict[str, list[str]] = defaultdict(list)
    for name in names:
        groups[name.strip().casefold()].append(name)
    return [sorted(group) for group in groups.values() if len(group) > 1]


def numbers_and_names(names: list[str]) -> tuple[list[str], list[str]] | None:
    """(numbers, names) when some label names are numbers and others are not; None otherwise."""
    numbers = [n for n in names if _NUMBER.fullmatch(n.strip())]
    words = [n for n in names if n not in numbers]
    return (numbers, words) if numbers and words else None


def label_map_example(names: list[str]) -> str:
    """A `data.label_map` (YAML flow) that joins the confusable names of `names`, or names its numbers."""
    # each group joins on its plainest spelling: no surrounding spaces, lower case if there is one
    pairs = [(n, min(g, key=lambda m: (m != m.strip(), m != m.lower(), m))) for g in confusable_groups(names)
             for n in g]
    mixed = numbers_and_names(names)
    pairs += [(n, "<class name>") for n in (mixed[0] if mixed else [])]
    shown = [(k, v) for k, v in pairs if k != v][:SHOWN]
    return "{" + ", ".join(f"{_yaml(k)}: {_yaml(v)}" for k, v in shown) + "}"


def _yaml(text: str) -> str:
    return repr(text) if text != text.strip() or not text else text


def check_discovered_labels(names: list[str], where: str, fix: str) -> None:
    """Refuse discovered label names that would make one class several; `fix` says how to map them together."""
    groups = confusable_groups(names)
    if groups:
        shown = "; ".join(", ".join(repr(n) for n in g) for g in groups[:SHOWN])
        more = f" and {len(groups) - SHOWN} more groups" if len(groups) > SHOWN else ""
        raise UserError(f"labels of {where} differ only by case or surrounding spaces ({shown}{more}): each would "
                        f"become a class of its own; {fix}")
    mixed = numbers_and_names(names)
    if mixed:
        numbers, words = mixed
        raise UserError(f"labels of {where} mix numbers ({', '.join(repr(n) for n in numbers[:SHOWN])}) and names "
                        f"({', '.join(repr(n) for n in words[:SHOWN])}): the numbers would become classes of their "
                        f"own; {fix}")
