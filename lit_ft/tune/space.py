"""The search space of `lit_ft tune`: a small YAML file, one config key per entry, checked before any trial runs.

    model.learning_rate: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}
    model.warmup: {type: float, low: 0.0, high: 0.2, step: 0.05}
    model.lora.r: {type: int, low: 4, high: 32, log: true}
    data.init_args.batch_size: {type: categorical, choices: [8, 16]}
    pruner: {type: median, n_startup_trials: 2}     # optional, see lit_ft/tune/pruner.py

Every key but `pruner` is a config key, written as on the command line (`--model.learning_rate`). Each mistake is
one `UserError` naming the file and the key. Light to import: no Optuna here (distributions are built on demand).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_ft.commands.preflight import load_yaml
from lit_ft.errors import UserError

PRUNER_KEY = "pruner"
Scalar = bool | int | float | str | None
FIELDS = {"float": {"low", "high", "log", "step"}, "int": {"low", "high", "log", "step"}, "categorical": {"choices"}}
EXAMPLE = {
    "float": "{type: float, low: 1.0e-5, high: 1.0e-3, log: true}",
    "int": "{type: int, low: 4, high: 32, step: 4}",
    "categorical": "{type: categorical, choices: [8, 16]}",
}


@dataclass(frozen=True)
class Param:
    """One searched config key: a float or int range (optionally log-scaled or stepped), or a list of choices."""

    key: str
    type: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Scalar, ...] = ()

    def distribution(self) -> Any:
        """The Optuna distribution of this key."""
        from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

        if self.type == "categorical":
            return CategoricalDistribution(self.choices)
        if self.type == "int":
            return IntDistribution(int(self.low or 0), int(self.high or 0), log=self.log, step=int(self.step or 1))
        return FloatDistribution(float(self.low or 0), float(self.high or 0), log=self.log, step=self.step)

    def first(self) -> Scalar:
        """A value inside the space (used to check that the key fits the config before any trial)."""
        return self.choices[0] if self.type == "categorical" else self.low


@dataclass(frozen=True)
class SearchSpace:
    path: str
    params: dict[str, Param]
    pruner: dict[str, Any]

    def distributions(self) -> dict[str, Any]:
        return {key: p.distribution() for key, p in self.params.items()}

    def describe(self) -> dict[str, Any]:
        """A JSON-ready form, stored with the study so a resumed search can tell the space has not changed."""
        return {"params": {k: {f: v for f, v in vars(p).items() if f != "key"} for k, p in self.params.items()},
                "pruner": self.pruner}


def load_space(path: str) -> SearchSpace:
    """Read and check a search-space file."""
    if not Path(path).is_file():
        raise UserError(f"search space '{path}' does not exist; fix the --search path")
    loaded = load_yaml(Path(path))
    if not isinstance(loaded, dict) or not loaded:
        raise UserError(f"search space {path}: expected a mapping of config keys to ranges, such as "
                        f"`model.learning_rate: {EXAMPLE['float']}`; got {type(loaded).__name__}")
    pruner = loaded.pop(PRUNER_KEY, None) or {"type": "median"}
    if not isinstance(pruner, dict):
        raise UserError(f"search space {path}: '{PRUNER_KEY}' must be a mapping such as {{type: median}}")
    if not loaded:
        raise UserError(f"search space {path}: no config key to search; add one such as "
                        f"`model.learning_rate: {EXAMPLE['float']}`")
    return SearchSpace(path, {str(k): parse_param(path, str(k), v) for k, v in loaded.items()}, dict(pruner))


def parse_param(path: str, key: str, spec: Any) -> Param:
    where = f"search space {path}: '{key}'"
    if not key or key.startswith("-") or " " in key:
        raise UserError(f"{where} is not a config key; write keys as on the command line without '--', "
                        "such as model.learning_rate")
    if not isinstance(spec, dict) or spec.get("type") not in FIELDS:
        kind = spec.get("type") if isinstance(spec, dict) else spec
        raise UserError(f"{where}: expected a mapping with type float, int or categorical, such as "
                        f"{EXAMPLE['float']}; got {kind!r}")
    kind = str(spec["type"])
    unknown = sorted(set(spec) - FIELDS[kind] - {"type"})
    if unknown:
        raise UserError(f"{where}: unknown field(s) {unknown} for type {kind}; its fields are "
                        f"{sorted(FIELDS[kind])}, as in {EXAMPLE[kind]}")
    if kind == "categorical":
        return Param(key, kind, choices=_choices(where, spec.get("choices")))
    return _range(where, key, kind, spec)


def _choices(where: str, choices: Any) -> tuple[Scalar, ...]:
    if not isinstance(choices, list) or not choices:
        raise UserError(f"{where}: 'choices' must be a non-empty list, as in {EXAMPLE['categorical']}")
    for choice in choices:
        if choice is not None and not isinstance(choice, bool | int | float | str):
            raise UserError(f"{where}: choice {choice!r} is not a number, string, boolean or null; Optuna can only "
                            "choose among such values (give a nested value as a YAML/JSON string)")
    if len(set(map(repr, choices))) != len(choices):
        raise UserError(f"{where}: 'choices' lists a value twice: {choices}")
    return tuple(choices)


def _range(where: str, key: str, kind: str, spec: dict[str, Any]) -> Param:
    number = int if kind == "int" else float
    low, high = (_number(where, name, spec.get(name), number) for name in ("low", "high"))
    step = None if spec.get("step") is None else _number(where, "step", spec["step"], number)
    log = spec.get("log", False)
    if low is None or high is None:
        raise UserError(f"{where}: a {kind} range needs 'low' and 'high', as in {EXAMPLE[kind]}")
    if not isinstance(log, bool):
        raise UserError(f"{where}: 'log' must be true or false, got {log!r}")
    if low >= high:
        raise UserError(f"{where}: 'low' ({low}) must be below 'high' ({high})")
    if log and low <= 0:
        raise UserError(f"{where}: a log-scaled range needs 'low' above 0, got {low}")
    if step is not None and (step <= 0 or log):
        raise UserError(f"{where}: 'step' must be above 0 and cannot be combined with log: true (got step {step})")
    return Param(key, kind, low=low, high=high, log=log, step=step)


def _number(where: str, name: str, value: Any, number: type) -> Any:
    """A bound as a number; YAML reads `1e-5` (no dot) as a string, so numeric strings are accepted too."""
    if value is None:
        return None
    try:
        parsed = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        parsed = math.nan
    if not math.isfinite(parsed) or (number is int and not parsed.is_integer()):
        raise UserError(f"{where}: '{name}' must be {'an integer' if number is int else 'a finite number'}, "
                        f"got {value!r}")
    return int(parsed) if number is int else parsed
