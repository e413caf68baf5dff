"""Configs of a search, as `lit_ft fit` itself resolves them (`--print_config`): the run directory and seed the
search starts from, and the best trial written as a recipe that `lit_ft fit --config` runs as is."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import yaml

from lit_ft.errors import UserError
from lit_ft.io import write_text
from lit_ft.tune.space import SearchSpace


def overrides(params: dict[str, Any]) -> list[str]:
    """Sampled values as command-line overrides (`--model.learning_rate=0.0003`), read by jsonargparse as YAML."""
    return [f"--{key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in params.items()]


def resolved_config(fit_argv: list[str]) -> str:
    """The full config that `lit_ft fit` would run with these arguments, as YAML text. Nulls stay: a null the
    recipe sets where the option's default is not null (`trainer.check_val_every_n_epoch: null`, validating by
    steps) would otherwise come back as the default, and the best recipe would not run what its trial ran."""
    from lit_ft.commands.cli import run

    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        try:
            run(["fit", *fit_argv, "--print_config"])
        except SystemExit as done:
            if done.code not in (0, None):
                raise
    return printed.getvalue()


def starting_point(fit_argv: list[str], space: SearchSpace) -> dict[str, Any]:
    """The fit's resolved config with every searched key at a value of its range, and every other choice of each
    categorical key tried too: a key the config does not have, or a value it rejects, is a one-line error naming
    the key before any trial runs (each check is a parse, well under a second once the first has run)."""
    firsts = {key: p.first() for key, p in space.params.items()}
    text = _checked(fit_argv, firsts, space, None)
    for key, param in space.params.items():
        for choice in param.choices[1:]:
            _checked(fit_argv, {**firsts, key: choice}, space, (key, choice))
    loaded = yaml.safe_load(text)
    return loaded if isinstance(loaded, dict) else {}


def _checked(fit_argv: list[str], values: dict[str, Any], space: SearchSpace, varied: tuple[str, Any] | None) -> str:
    try:
        return resolved_config([*fit_argv, *overrides(values)])
    except UserError as err:
        if varied is not None:
            raise UserError(f"search space {space.path}: '{varied[0]}' choice {varied[1]!r} does not fit the "
                            f"config: {err}") from err
        named = [key for key in space.params if key in str(err)]
        if not named:
            raise
        raise UserError(f"search space {space.path}: '{named[0]}' does not fit the config: {err}") from err


def write_best_recipe(fit_argv: list[str], trial: Any, monitor: str, out: Path) -> Path:
    """The best trial's config (its values, its seed, a fresh run directory) as a ready recipe."""
    run_dir = out.parent / "best"
    text = resolved_config([*fit_argv, *overrides(trial.params), f"--seed_everything={trial.user_attrs['seed']}",
                            f"--trainer.default_root_dir={run_dir}"])
    values = ", ".join(f"{k}={v}" for k, v in trial.params.items())
    header = (f"# The best trial of the search in {out.parent}: trial {trial.number}, {monitor} {trial.value:.6g}\n"
              f"# ({values}). Train it with:\n#   lit_ft fit --config {out}\n")
    body = "\n".join(line for line in text.splitlines() if not line.startswith("# lightning"))
    write_text(header + body + "\n", out)
    return out
