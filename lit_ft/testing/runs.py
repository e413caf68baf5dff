"""Running a recipe for the conformance tests: the `Conformance` settings, one shared fit, comparisons."""

from __future__ import annotations

import contextlib
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import lit_ft
from lit_ft.commands.cli import OVERLAY_ENV, run
from lit_ft.commands.trainer_cli import LitFtCLI
from lit_ft.io import read_jsonl
from lit_ft.training.predictions import PredictionWriter
from lit_ft.training.safe_load import load_checkpoint_file

STEPS = 2
# the kit's own settings come after the recipe, its overlays and the plugin's args, so they always hold
KIT_ARGS = ["--trainer.max_steps", str(STEPS), "--trainer.max_epochs", "-1", "--trainer.limit_predict_batches", "1.0",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@dataclass
class Conformance:
    """What the conformance tests run.

    Args:
        recipe: The recipe YAML (`--config`).
        args: Overrides after the recipe (a tiny `--model.backbone`, small data files, `--trainer.logger false`);
            the recipe with them must have a predict split.
        overlays: Config files applied after the recipe through `LIT_FT_OVERLAY` (stand-ins for hub data).
        plugins: Local plugin modules to load (`--plugins`): a .py file, a package directory or a module name.
        pythonpath: Directories the DDP subprocesses need on `sys.path` (a plugin's source root when it is not
            installed).
        ddp_batch_size: Training batch per process in the 2-process run (the 1-process run uses twice as many).
        ddp: Run the 2-process DDP check.
        ddp_tolerances: Per metric name (as the task's `metrics()` names it, or `loss`), the `(rel, abs)`
            tolerance of the DDP check, in place of its kind's (`lit_ft.testing.tolerance`): for a metric of
            your own whose 2-process value differs by more than float rounding for a reason you have checked.
    """

    recipe: str | Path
    args: list[str] = field(default_factory=list)
    overlays: list[str | Path] = field(default_factory=list)
    plugins: list[str | Path] = field(default_factory=list)
    pythonpath: list[str | Path] = field(default_factory=list)
    ddp_batch_size: int = 2
    ddp: bool = True
    ddp_tolerances: dict[str, tuple[float, float]] = field(default_factory=dict)

    def argv(self, verb: str, root: Path, *extra: str) -> list[str]:
        plugins = ["--plugins", ",".join(map(str, self.plugins))] if self.plugins else []
        return [verb, "--config", str(self.recipe), *plugins, *self.args, *KIT_ARGS,
                "--trainer.default_root_dir", str(root), *extra]

    @contextlib.contextmanager
    def environment(self) -> Iterator[None]:
        """LIT_FT_OVERLAY set to `overlays` (unset when there are none) while a command runs."""
        previous = os.environ.pop(OVERLAY_ENV, None)
        if self.overlays:
            os.environ[OVERLAY_ENV] = os.pathsep.join(map(str, self.overlays))
        try:
            yield
        finally:
            os.environ.pop(OVERLAY_ENV, None)
            if previous is not None:
                os.environ[OVERLAY_ENV] = previous

    def run(self, verb: str, root: Path, *extra: str) -> LitFtCLI:
        with self.environment():
            cli = run(self.argv(verb, root, *extra))
        assert cli is not None
        return cli


@dataclass
class Fitted:
    """One fit of the recipe and the predictions of its best weights, made in the fitting process."""

    conformance: Conformance
    cli: LitFtCLI
    root: Path
    in_process: list[dict[str, Any]]
    fit_metrics: dict[str, float]  # the trainer's callback metrics at the end of fit


def fit_and_predict(conformance: Conformance, root: Path) -> Fitted:
    """Fit for STEPS steps, load the best checkpoint's weights into the fitted model and predict with it."""
    cli = conformance.run("fit", root)
    metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if v.numel() == 1}
    if cli.datamodule.raw("predict") is None:
        raise AssertionError(f"{conformance.recipe} with Conformance.args has no predict split, which the conformance "
                             "tests need: add `--data.init_args.source.predict FILE` to the args")
    best = cli.trainer.checkpoint_callback.best_model_path  # type: ignore[union-attr]
    cli.model.load_state_dict(load_checkpoint_file(best)["state_dict"])
    cli.trainer.predict(cli.model, datamodule=cli.datamodule)
    return Fitted(conformance, cli, root, read_jsonl(predictions_file(cli)), metrics)


def predictions_file(cli: LitFtCLI) -> Path:
    writer = next(cb for cb in cli.trainer.callbacks if isinstance(cb, PredictionWriter))  # type: ignore[attr-defined]
    return Path(writer.path or Path(cli.trainer.default_root_dir) / "predictions.jsonl")


def assert_close(actual: Any, expected: Any, where: str = "record") -> None:
    """Equal JSON values, floats within 1e-5 (relative) or 1e-6."""
    if isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), f"{where}: {actual} != {expected}"
        for key in expected:
            assert_close(actual[key], expected[key], f"{where}.{key}")
    elif isinstance(expected, list):
        assert isinstance(actual, list) and len(actual) == len(expected), f"{where}: {actual} != {expected}"
        for i, (a, e) in enumerate(zip(actual, expected, strict=True)):
            assert_close(a, e, f"{where}[{i}]")
    elif isinstance(expected, float) and not isinstance(actual, bool):
        assert math.isclose(actual, expected, rel_tol=1e-5, abs_tol=1e-6), f"{where}: {actual} != {expected}"
    else:
        assert actual == expected, f"{where}: {actual!r} != {expected!r}"


def collapsed(ids: Iterable[Any]) -> list[Any]:
    """Ids with consecutive repeats dropped (a task may write several records per input, like QA windows)."""
    out: list[Any] = []
    for row_id in ids:
        if not out or out[-1] != row_id:
            out.append(row_id)
    return out


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads; on a busy machine the hand-offs slow small ops down."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def ddp_fit(conformance: Conformance, root: Path, devices: int) -> tuple[dict[str, Any], LitFtCLI | None]:
    """Fit on `devices` CPU processes at the same global batch: 1 in this process, more as a `python -m lit_ft`
    subprocess (DDP starts its workers by running that command again). Returns each validation's record of
    `<root>/metrics/val_*.json` by file name, and the in-process run (None for a subprocess)."""
    batch = conformance.ddp_batch_size * 2 // devices
    extra = ["--trainer.accelerator", "cpu", "--trainer.devices", str(devices), "--trainer.num_nodes", "1",
             "--trainer.strategy", "ddp" if devices > 1 else "auto", "--data.init_args.batch_size", str(batch),
             "--data.init_args.eval_batch_size", str(conformance.ddp_batch_size), "--export.enabled", "false",
             "--trainer.limit_val_batches", "1.0",  # a batch limit would see twice the rows on two processes
             "--trainer.enable_progress_bar", "true"]  # its callback writes metrics/ (no bars drawn in a pipe)
    cli = None
    if devices == 1:
        with one_thread():
            cli = conformance.run("fit", root, *extra)
    else:
        _run_subprocess(conformance, conformance.argv("fit", root, *extra))
    return {p.name: json.loads(p.read_text()) for p in sorted((root / "metrics").glob("val_*.json"))}, cli


def _run_subprocess(conformance: Conformance, argv: list[str]) -> None:
    source_root = Path(lit_ft.__file__).resolve().parents[1]  # the subprocesses import this very lit_ft
    paths = [str(source_root), *map(str, conformance.pythonpath), os.environ.get("PYTHONPATH", "")]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    env.pop(OVERLAY_ENV, None)
    if conformance.overlays:
        env[OVERLAY_ENV] = os.pathsep.join(map(str, conformance.overlays))
    cmd = [sys.executable, "-m", "lit_ft", *argv]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stderr[-3000:]}"
