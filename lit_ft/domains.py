"""The domains of numeric options: typed limits that jsonargparse checks at parse time, and their wording.

Every numeric constructor argument jsonargparse sees (FineTuner, the data modules, the callbacks, the task options)
is annotated with one of these types rather than a bare `int`/`float`, so a value outside its domain is refused
before anything loads, with the option, the value and the domain on one line (`domain_error`).
`tests/test_option_domains.py` holds every such argument to this, bar a short list of reasoned exceptions.

For mypy they are plain `int`/`float` (arithmetic stays typed); at run time they are jsonargparse's restricted
number types, subclasses of `int`/`float` that validate on construction.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lit_ft.adapters.jsonargparse import is_restricted_number, restriction_text
from lit_ft.errors import UserError

if TYPE_CHECKING:
    PositiveInt = int
    NonNegativeInt = int
    PositiveFloat = float
    NonNegativeFloat = float
    ClosedUnitInterval = float
    OpenUnitInterval = float
    Probability = float
    AllOrCount = int
else:
    from jsonargparse import typing as restricted

    PositiveInt = restricted.PositiveInt
    NonNegativeInt = restricted.NonNegativeInt
    PositiveFloat = restricted.PositiveFloat
    NonNegativeFloat = restricted.NonNegativeFloat
    ClosedUnitInterval = restricted.ClosedUnitInterval
    OpenUnitInterval = restricted.OpenUnitInterval

    # a dropout rate: 0 switches it off, 1 would drop everything
    Probability = restricted.restricted_number_type("Probability", float, [(">=", 0.0), ("<", 1.0)],
                                                    docstring="float restricted to be ≥0 and <1")
    # Lightning's "-1: all" next to a count (`checkpoint.save_top_k`)
    AllOrCount = restricted.restricted_number_type("AllOrCount", int, (">=", -1),
                                                   docstring="int restricted to be ≥-1")

# type name -> (the domain in words, what to set instead); a restricted type missing here is worded by its expression
DOMAINS: dict[str, tuple[str, str]] = {
    "PositiveInt": ("a positive integer", "1 or more"),
    "NonNegativeInt": ("an integer of 0 or more", "0 or more"),
    "PositiveFloat": ("a number above 0", "a number above 0"),
    "NonNegativeFloat": ("a number of 0 or more", "0 or more"),
    "ClosedUnitInterval": ("between 0 and 1 (both included)", "a number from 0 to 1"),
    "OpenUnitInterval": ("between 0 and 1 (both excluded)", "a number above 0 and below 1"),
    "AllOrCount": ("-1 (all) or a count of 0 or more", "-1 or more"),
    "Probability": ("between 0 and 1 (0 included, 1 excluded)", "a number from 0 up to, but not including, 1"),
}


def domain_error(key: str, value: str, type_name: str, expression: str = "") -> str:
    """`data.batch_size must be a positive integer (got 0); set data.batch_size to 1 or more`."""
    domain, fix = DOMAINS.get(type_name, (f"a number with {expression}" if expression else type_name, expression))
    return f"{key} must be {domain} (got {value}); set {key} to {fix}"


def check_domains(function: Callable[..., Any], values: dict[str, Any], prefix: str) -> None:
    """Values given to `function` outside the domain its annotations declare, as a `UserError` (for settings
    jsonargparse does not type itself, such as `model.task_options`)."""
    try:
        hints = typing.get_type_hints(function)
    except (NameError, TypeError):
        return  # annotations that do not resolve here: the call itself will say what is wrong
    for name, value in values.items():
        for kind in typing.get_args(hints.get(name)) or (hints.get(name),):
            if value is None or not is_restricted_number(kind):
                continue
            try:
                kind(value)
            except (TypeError, ValueError):
                error = domain_error(f"{prefix}.{name}", str(value), kind.__name__, restriction_text(kind))
                raise UserError(error) from None



def plain_numbers(value: Any) -> Any:
    """`value` with every restricted number in it (lists, tuples, dicts, dataclasses) as the plain `int`/`float`
    it is; unchanged containers are returned as they are. What a checkpoint holds must load with weights_only=True,
    which refuses jsonargparse's classes (`FineTuner.on_save_checkpoint`)."""
    if isinstance(value, bool) or type(value) in (int, float):
        return value
    if isinstance(value, (int, float)):
        return int(value) if isinstance(value, int) else float(value)
    if isinstance(value, (list, tuple)):
        items = [plain_numbers(v) for v in value]
        if all(a is b for a, b in zip(items, value, strict=True)):
            return value
        return items if isinstance(value, list) else tuple(items)
    if isinstance(value, dict):
        entries = {k: plain_numbers(v) for k, v in value.items()}
        return value if all(entries[k] is value[k] for k in value) else entries
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.init}
        changed = {k: plain_numbers(v) for k, v in fields.items() if plain_numbers(v) is not v}
        return dataclasses.replace(value, **changed) if changed else value
    return value
