"""`bench/gpu_check.sh --dry-run`: every GPU check's command read by lit_ft's own recipe parser, on a CPU.

For each check: the `lit_ft fit` arguments it would run, parsed and validated as `fit` parses them
(`lit_ft.commands.recipe.read_recipe`: config files, pieces, overrides, the data module built), and its model built
on the `meta` device from the 1B Llama's config (`lit_ft estimate`'s path: nothing loaded, no training). The clipping
check's commands (bench/gpu_check.py) are parsed the same way. One JSON line per check, like the real run.
"""

from __future__ import annotations

import importlib.util
import sys
import tempfile
from pathlib import Path
from typing import Any

from gpu_checks import BENCH, REPO, Check, Work, emit, prepare


def parsed(argv: list[str]) -> dict[str, Any]:
    """Parameters and estimated peak per device of one `lit_ft fit` command line (fit's parser, meta model)."""
    from lit_ft.commands.model_memory import recipe_estimate
    from lit_ft.commands.recipe import read_recipe

    assert argv[0] == "fit", argv
    recipe = read_recipe(argv[1:], "gpu_check")
    found = recipe_estimate(recipe.cfg, recipe.data, 1)
    return {"parameters": found.parameters, "trainable": found.trainable,
            "estimate_gib": round(found.device / 1024**3, 3)}  # device memory, as max_memory_allocated


def clipping_commands() -> list[list[str]]:
    import gpu_check

    return [["fit", "--config", "configs/quickstart.yaml", *args, "--trainer.accelerator", "cuda",
             "--trainer.callbacks+=gpu_check.ClipProbe"] for args in gpu_check.CHECKS.values()]


def dry_check(check: Check, work: Work) -> dict[str, Any]:
    if check.name == "clipping":
        commands = clipping_commands()
        for argv in commands:
            parsed(argv)
        return {"ok": True, "commands_parsed": len(commands)}
    figures = parsed(check.argv(work))
    if check.needs:
        figures["installed"] = importlib.util.find_spec(check.needs) is not None  # the real run needs it
    return {"ok": True, **figures}


def dry_run(checks: list[Check]) -> bool:
    from lit_ft import quiet

    sys.path.insert(0, str(BENCH))
    quiet.install()
    ok = True
    with tempfile.TemporaryDirectory(prefix="lit_ft_gpu_dry_run_") as tmp:
        work = Work(Path(tmp))
        prepare(work, weights=False)
        for check in checks:
            try:
                result = dry_check(check, work)
            except (SystemExit, Exception) as err:  # one bad check must not hide the others
                result = {"ok": False, "error": f"{type(err).__name__}: {err}"[:600]}
            ok = ok and result["ok"]
            emit(check.name, {**result, "dry_run": True})
    return ok


if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))
