"""`lit_ft tune`: hyperparameter search with Optuna over any config keys, each trial a real `lit_ft fit`.

    lit_ft tune --config configs/quickstart.yaml --search configs/tune/quickstart_search.yaml --trials 20

Trials maximise (or minimise) the run's monitored validation metric, the task's primary one, in the metric's own
direction; the pruner stops bad trials from their intermediate validations. The study is stored in
`<trainer.default_root_dir>/tune/study.db`, so the same command run again continues up to `--trials` in all;
each trial runs in `tune/trial_<number>`; the end prints the table of trials and each key's importance, and writes
the best trial as `tune/best.yaml`, a recipe for `lit_ft fit --config`. See docs/tune.md.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lit_ft.errors import UserError

if TYPE_CHECKING:
    from lit_ft.tune.study import Search

DEFAULT_SEED = 42
KEEP = ("best", "all")  # see lit_ft/tune/keep.py


def parse(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """tune's own options, and the rest: `lit_ft fit` arguments (configs first, then overrides)."""
    parser = argparse.ArgumentParser(
        prog="lit_ft tune", allow_abbrev=False,
        description="Search hyperparameters with Optuna: each trial is `lit_ft fit` with sampled values.",
        epilog="Every other option is passed to each trial's `lit_ft fit` (e.g. --trainer.max_epochs 2).")
    parser.add_argument("--config", "-c", action="append", required=True, help="fit config(s), merged left to right")
    parser.add_argument("--search", required=True, help="the search space YAML (see docs/tune.md)")
    parser.add_argument("--trials", type=int, required=True, help="trials in all, counting earlier runs' trials")
    parser.add_argument("--tune_dir", default=None, help="where the study and trials go "
                        "(default: <trainer.default_root_dir>/tune)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the sampler (and of every trial "
                        "when the config's seed_everything is not a number)")
    parser.add_argument("--keep", choices=KEEP, default="best", help="trial directories that keep their "
                        "checkpoints and export: the best completed trial's (default), or all")
    args, rest = parser.parse_known_args(argv)
    if args.trials < 1:
        raise UserError(f"--trials must be at least 1, got {args.trials}")
    if not 0 <= args.seed < 2**32:  # optuna's sampler seeds numpy, which takes uint32
        raise UserError(f"--seed must be an integer from 0 to {2**32 - 1} (got {args.seed}); set --seed in that range")
    return args, [part for config in args.config for part in ("--config", config)] + rest


def main(argv: list[str]) -> None:
    args, fit_argv = parse(argv)  # first: `lit_ft tune --help` imports nothing heavy
    from lit_ft.tune.pruner import make_pruner
    from lit_ft.tune.space import load_space
    from lit_ft.tune.study import Search, require_optuna

    require_optuna()
    space = load_space(args.search)
    make_pruner(space.pruner, f"search space {space.path}")  # checked before the slow start of the first fit
    _check_not_fixed(space.params, fit_argv, args.search)
    from lit_ft.tune.recipe import starting_point

    resolved = starting_point(fit_argv, space)
    trainer = resolved.get("trainer") or {}
    fit_argv = [*fit_argv, *one_device(trainer)]
    root = Path(trainer.get("default_root_dir") or ".")
    seed = resolved.get("seed_everything")
    trial_seed = seed if isinstance(seed, int) and not isinstance(seed, bool) else args.seed
    tune_dir = Path(args.tune_dir) if args.tune_dir else root / "tune"
    from lit_ft.owned_dir import claim, mark_owned
    from lit_ft.run_lock import holding

    fix = "give a new or empty --tune_dir, or the directory of an earlier search to continue it"
    claim(tune_dir, "tune", False, "--tune_dir", fix)
    with holding(tune_dir, f"lit_ft tune {' '.join(argv)}"):  # one search per study
        claim(tune_dir, "tune", False, "--tune_dir", fix)
        mark_owned(tune_dir, "tune")
        search_and_report(Search(tune_dir, space, args.seed, trial_seed), fit_argv, args.trials, args.keep)


def search_and_report(search: Search, fit_argv: list[str], trials: int, keep: str) -> None:
    from lit_ft.tune.keep import drop_weights
    from lit_ft.tune.report import best_trial, importance_lines, trials_table
    from lit_ft.tune.trial import run_trial

    rerun = search.recover_interrupted()
    if rerun:
        print(f"lit_ft: trial(s) {rerun} were interrupted; their values run again", flush=True)
    todo = max(trials - search.finished(), 0)
    print(f"lit_ft: {search.finished()} of {trials} trials done in {search.db}; running {todo}", flush=True)
    for _ in range(todo):
        run_trial(search, fit_argv)
        drop_weights(search, keep)
    print(f"\nlit_ft: {len(search.trials())} trials in {search.db}")
    print("\n".join(trials_table(search)))
    best = best_trial(search)
    if best is None:
        print("best: none (no trial completed): nothing to write; widen the search or relax the pruner")
        return
    from lit_ft.tune.recipe import write_best_recipe

    recipe = write_best_recipe(fit_argv, best, search.monitor(), search.tune_dir / "best.yaml")
    print(f"best: trial {best.number}, {search.monitor()} {best.value:.4f}; recipe {recipe} "
          f"(lit_ft fit --config {recipe})")
    print("\n".join(importance_lines(search.study, search.seed)))


def _check_not_fixed(params: dict[str, Any], fit_argv: list[str], path: str) -> None:
    given = {arg.split("=", 1)[0][2:] for arg in fit_argv if arg.startswith("--")}
    both = sorted(set(params) & given)
    if both:
        raise UserError(f"'{both[0]}' is searched ({path}) and also given on the command line; drop one of them")


def one_device(trainer: dict[str, Any]) -> list[str]:
    """Trials run in this process, on one device: `devices: auto` (all GPUs: DDP would start copies of this whole
    command) becomes 1, and more than one device or node is an error."""
    devices, nodes = trainer.get("devices", "auto"), trainer.get("num_nodes") or 1
    if devices in ("auto", -1, "-1", None):
        return ["--trainer.devices=1"]
    if isinstance(devices, list):
        count = len(devices)
    elif isinstance(devices, str) and "," in devices:  # GPU indices, "0,1"
        count = len([d for d in devices.split(",") if d.strip()])
    else:
        count = int(devices)
    if count > 1 or nodes > 1:
        raise UserError(f"lit_ft tune runs its trials one at a time in its own process, on one device; the config "
                        f"asks for trainer.devices {devices} and trainer.num_nodes {nodes}: set --trainer.devices 1 "
                        "(run one search per device to use several)")
    return []
