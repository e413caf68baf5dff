"""What trial directories keep: a MiniLM trial writes some 440 MB of checkpoints and export, an LLM's gigabytes,
so by default (`--keep best`) only the best completed trial keeps its `checkpoints/` and `export/`; every trial
keeps its config, metrics and logs. `--keep all` keeps everything."""

from __future__ import annotations

from pathlib import Path

from lit_ft.owned_dir import remove_owned
from lit_ft.tune.study import Search

WEIGHTS = ("checkpoints", "export")


def drop_weights(search: Search, keep: str) -> list[Path]:
    """Remove the checkpoints and export of every ended trial but the best completed one (the files lit_ft wrote
    there: `lit_ft.owned_dir.remove_owned`); returns what went."""
    if keep == "all" or search.study is None:
        return []
    states = search.optuna.trial.TrialState
    complete = [t for t in search.trials() if t.state == states.COMPLETE]
    best = search.study.best_trial.number if complete else None
    removed = []
    for trial in search.trials():
        if trial.state in (states.RUNNING, states.WAITING) or trial.number == best:
            continue
        run_dir = Path(trial.user_attrs.get("dir") or search.tune_dir / f"trial_{trial.number}")
        for name in WEIGHTS:
            removed.extend(remove_owned(run_dir / name, "export" if name == "export" else name))
    return removed
