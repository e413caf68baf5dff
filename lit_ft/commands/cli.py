"""`lit_ft`: the entry point. Trainer verbs (fit | validate | test | predict) go to LightningCLI; `tasks` and
`export` are lit_ft's own. Only what a verb needs is imported, so `lit_ft --help` and `lit_ft tasks` start
without Lightning, torch or transformers (`python bench/startup.py` measures it)."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lit_ft.commands.config_args import OVERLAY_ENV, PLUGINS_ENV, plugin_specs, prepare_config_command, with_overlays
from lit_ft.errors import (
    DEBUG_ENV,
    DEBUG_FLAG,
    EXIT_USER_ERROR,
    UserError,
    debug_requested,
    one_line,
    user_error_in_chain,
)
from lit_ft.no_room import no_room_cause, no_room_error

if TYPE_CHECKING:
    from lit_ft.commands.trainer_cli import LitFtCLI

CHECKPOINT_ALIASES = ("best", "last")
EXIT_CTRL_C = 130  # 128 + SIGINT, as a shell reports it


@dataclass(frozen=True)
class Command:
    help: str
    main: Callable[[list[str]], None] | str | None = None  # None: a LightningCLI trainer verb
    # a "module:function" string names a verb whose code is imported only when it runs (`lit_ft --help` stays fast)

    def entry(self) -> Callable[[list[str]], None] | None:
        if not isinstance(self.main, str):
            return self.main
        module, _, function = self.main.partition(":")
        found: Callable[[list[str]], None] = getattr(importlib.import_module(module), function)
        return found


def list_tasks_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="lit_ft tasks", description=COMMANDS["tasks"].help)
    parser.add_argument("--plugins", action="append", default=[],
                        help=f"local plugin modules (.py files or module names), comma-separated; also ${PLUGINS_ENV}")
    parser.add_argument("--load", action="store_true",
                        help="import every installed plugin: show its data module, report plugins that fail to load")
    parser.add_argument("--options", metavar="TASK",
                        help="print the task's model.task_options as a Markdown table: name, type, default, meaning")
    args = parser.parse_args(argv)
    from lit_ft.registry import listed_tasks, load_plugin_module

    for spec in plugin_specs(["--plugins", ",".join(args.plugins)] if args.plugins else []):
        load_plugin_module(spec)
    if args.options:
        from lit_ft.registry import get_task
        from lit_ft.task_options import options_table

        print(options_table(get_task(args.options)), end="")
        return
    tasks = listed_tasks(load=args.load)
    width = max((len(n) for n in tasks), default=4)
    print(f"{'task':<{width}}  {'source':<32}  class [/ data module]")
    for name, (source, where) in sorted(tasks.items()):
        print(f"{name:<{width}}  {source:<32}  {where}")


def export_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="lit_ft export", description=COMMANDS["export"].help)
    parser.add_argument("checkpoint", help="a .ckpt file, or a run directory (its best checkpoint is used)")
    parser.add_argument("--output_dir", "-o", required=True,
                        help="directory to write: missing, empty or an earlier export (whose files are replaced)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a directory holding other files (they are kept; none is replaced)")
    parser.add_argument("--which", choices=CHECKPOINT_ALIASES, default="best", help="checkpoint of a run directory")
    parser.add_argument("--format", choices=("hf", "onnx"), default="hf",
                        help="hf: a Hugging Face model directory; onnx: model.onnx with the tokenizer and config "
                             "(encoder tasks; needs `pip install 'lit_ft[onnx]'`)")
    parser.add_argument("--adapter_only", action="store_true", help="LoRA: write the adapter instead of merging it")
    parser.add_argument("--atol", type=float, default=1e-3,
                        help="onnx: largest difference from PyTorch's outputs the check after export accepts")
    parser.add_argument("--push_to_hub", metavar="REPO", default=None,
                        help="hf: then upload the export to this Hugging Face Hub model repo (user/name; created "
                             "when missing; token: HF_TOKEN or `hf auth login`)")
    parser.add_argument("--private", action="store_true", help="--push_to_hub: create the repo private")
    parser.add_argument("--plugins", default="", help="comma-separated local plugin modules")
    args = parser.parse_args(argv)
    if args.format == "onnx" and args.push_to_hub:
        raise UserError("--push_to_hub uploads a Hugging Face directory: use it with --format hf, or upload the "
                        "ONNX directory with `hf upload REPO DIR`")
    if args.push_to_hub:
        check_repo_id(args.push_to_hub)  # before any work
    if args.format == "onnx" and args.adapter_only:
        raise UserError("--adapter_only writes a LoRA adapter for Transformers, which an ONNX file cannot hold: "
                        "drop it (the ONNX export merges the adapter) or use --format hf")
    from lit_ft import quiet
    from lit_ft.owned_dir import check_apart, claim
    from lit_ft.registry import load_plugin_module
    from lit_ft.run_lock import holding
    from lit_ft.training.checkpoint import find_checkpoint
    from lit_ft.training.export import EXPORT_KIND, export_model, load_for_export

    quiet.install()  # no weight-loading bars, no "newly initialised head" report for the restored checkpoint
    for spec in filter(None, args.plugins.split(",")):
        load_plugin_module(spec)
    try:
        found = find_checkpoint(args.checkpoint, args.which)
    except FileNotFoundError as err:
        raise UserError(str(err)) from err
    run_dir = run_of(Path(found))
    check_apart(args.output_dir, "--output_dir", run_dir, Path(found).parent)
    claim(args.output_dir, EXPORT_KIND, args.overwrite, "--output_dir")  # before the model loads
    with holding(run_dir, f"lit_ft export {' '.join(argv)}", writing=False):  # no fit writes the run while it is read
        if args.format == "onnx":
            from lit_ft.commands.onnx_export import export_onnx_checkpoint

            print(export_onnx_checkpoint(found, args.output_dir, args.atol, args.overwrite).summary())
            return
        module, source, data = load_for_export(found, run_dir)
        out = export_model(module, args.output_dir, merge=not args.adapter_only, overwrite=args.overwrite,
                           source=source, model_id=args.push_to_hub, data=data)
    print(f"lit_ft: exported to {out}", flush=True)
    if args.push_to_hub:
        from lit_ft.commands.hub_push import push_export

        print(f"lit_ft: pushed {out} to the Hub: {push_export(out, args.push_to_hub, args.private)}")


def check_repo_id(repo_id: str) -> None:
    from huggingface_hub.errors import HFValidationError
    from huggingface_hub.utils import validate_repo_id

    try:
        validate_repo_id(repo_id)
    except HFValidationError as err:
        raise UserError(f"--push_to_hub '{repo_id}' is not a Hub repo id ({err}); give user/name or org/name") \
            from err


def run_of(checkpoint: Path) -> Path:
    """The run directory a checkpoint belongs to: the parent of its `checkpoints/` directory, else its own."""
    return checkpoint.parent.parent if checkpoint.parent.name == "checkpoints" else checkpoint.parent


# Every verb of `lit_ft`, in the order `lit_ft --help` shows them; tests check the trainer verbs against LightningCLI.
COMMANDS: dict[str, Command] = {
    "fit": Command("train, validate, keep the best checkpoint by the task's primary metric, export it"),
    "validate": Command("evaluate a checkpoint on the validation split (val/... metrics)"),
    "test": Command("evaluate a checkpoint on the test split (test/... metrics)"),
    "predict": Command("write predictions for the predict split, one JSON record per input"),
    "export": Command("write a run's best (or last) checkpoint as a Hugging Face model directory (or ONNX)",
                      export_main),
    "tasks": Command("list the task plugins and where each comes from (built-in, package, local module)",
                     list_tasks_main),
    "new-task": Command("scaffold a task-plugin package (task, data module, fixture, recipe, conformance tests)",
                        "lit_ft.commands.new_task:main"),
    "tune": Command("search hyperparameters with Optuna, each trial a `fit`; resumable, prints the best recipe",
                    "lit_ft.tune.command:main"),
    "inspect-data": Command("what the model will see: rows, labels, token lengths, duplicates, train/eval overlap, "
                            "encoded examples", "lit_ft.commands.inspect_data:main"),
    "check": Command("pre-flight checks of a recipe (precision, lengths, labels, schedule, LoRA) with their fixes",
                     "lit_ft.commands.check:main"),
    "estimate": Command("parameters and the peak memory per device of a recipe (weights, gradients, optimizer "
                        "state, activations; on the CPU the process too), before any compute",
                        "lit_ft.commands.estimate:main"),
    "report": Command("an offline HTML report of runs: curves, metrics, best checkpoint, task analyses",
                      "lit_ft.commands.report:main"),
    "serve": Command("serve a run's best checkpoint or an export over HTTP: /predict for every task, OpenAI-compatible "
                     "/v1 routes for generation, dynamic batching", "lit_ft.commands.serve:main"),
    "chat": Command("talk to a fine-tuned generation model (sft) in the terminal: history through the chat "
                    "template, answers streamed", "lit_ft.commands.chat:main"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    verbs = "\n".join(f"  {name:<{width}}  {cmd.help}" for name, cmd in COMMANDS.items())
    return (
        f"usage: lit_ft {{{','.join(COMMANDS)}}} [options]\n\n"
        "Fine-tune pretrained language models with PyTorch Lightning: one shared model, one plugin per task.\n\n"
        f"commands (`lit_ft COMMAND --help` shows a command's options):\n{verbs}\n\n"
        "options:\n"
        "  -h, --help  show this help and exit\n"
        f"  {DEBUG_FLAG}     show the full traceback of an error (or {DEBUG_ENV}=1)\n\n"
        "environment:\n"
        f"  {PLUGINS_ENV}  local plugin modules to load ({os.pathsep}-separated)\n"
        f"  {OVERLAY_ENV}  config files ({os.pathsep}-separated) applied after a trainer command's --config files "
        "(dict options merge key by key)\n"
        f"  {DEBUG_ENV}    1: tracebacks instead of one-line errors\n"
    )


def main(args: list[str] | None = None) -> None:
    """Console entry point (`lit_ft ...`): user errors print one line and exit 2 (`--debug` for the traceback);
    an interrupted command exits 130 (Ctrl-C) or 143 (SIGTERM: a fit saves `last` first,
    `lit_ft.training.interrupt`)."""
    argv = list(sys.argv[1:] if args is None else args)
    debug = debug_requested(argv)
    argv = [a for a in argv if a != DEBUG_FLAG]
    if hasattr(signal, "SIGXFSZ") and threading.current_thread() is threading.main_thread():
        # over `ulimit -f` a write fails (EFBIG, reported as one line) instead of the process dying; CPython
        # ignores SIGXFSZ at startup already, this holds where an embedding restored the default action
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        run(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print("lit_ft: interrupted (Ctrl-C)", file=sys.stderr, flush=True)
        sys.exit(EXIT_CTRL_C)
    except SystemExit as stop:
        if isinstance(stop.__context__, KeyboardInterrupt) and stop.code == 1:
            raise SystemExit(EXIT_CTRL_C) from None  # Lightning exits 1 after a Ctrl-C it handled
        raise
    except Exception as err:
        found = user_error_in_chain(err) or unwrapped_no_room(err)
        if found is None or debug:
            raise
        print(f"lit_ft: error: {one_line(str(found))}", file=sys.stderr, flush=True)
        sys.exit(EXIT_USER_ERROR)


def unwrapped_no_room(err: BaseException) -> UserError | None:
    """A write that found no room outside lit_ft's own writers (a logger's file), as one line."""
    cause = no_room_cause(err)
    return None if cause is None else no_room_error(cause, cause.filename or "(unnamed)", None)


def run(args: list[str] | None = None, callbacks: list[Any] | None = None) -> LitFtCLI | None:
    """Run a lit_ft command; returns the LightningCLI object for trainer commands (tests inspect it).

    `callbacks`: Lightning callbacks added to a trainer command's own (`lit_ft tune` reports trials with one);
    they are not part of the parsed config, so the config the run saves stays the one given."""
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), end="", file=sys.stdout if argv else sys.stderr)
        if not argv:
            raise SystemExit(EXIT_USER_ERROR)
        return None
    verb = argv[0]
    if verb not in COMMANDS and not verb.startswith("-"):
        raise UserError(f"unknown command '{verb}'; the commands are {', '.join(COMMANDS)} (see `lit_ft --help`)")
    command = COMMANDS.get(verb)
    entry = command.entry() if command is not None else None
    if entry is not None:
        entry(argv[1:])
        return None
    # a fit stopped by a signal prints `argv` to resume it (overlays stay in the environment); a caller with
    # callbacks of its own (`lit_ft tune`'s trials) handles stops itself
    return _run_trainer(with_overlays(argv), callbacks, resume_argv=argv if callbacks is None else None)


def _run_trainer(argv: list[str], callbacks: list[Any] | None = None,
                 resume_argv: list[str] | None = None) -> LitFtCLI:
    prepare_config_command(argv)
    from lit_ft.commands.trainer_cli import run_trainer

    return run_trainer(argv, callbacks, resume_argv)


def __getattr__(name: str) -> Any:
    """`from lit_ft.commands.cli import LitFtCLI` keeps working (it lives in lit_ft.commands.trainer_cli, imported on
    demand)."""
    if name == "LitFtCLI":
        from lit_ft.commands.trainer_cli import LitFtCLI

        return LitFtCLI
    raise AttributeError(f"module 'lit_ft.commands.cli' has no attribute '{name}'")


if __name__ == "__main__":
    main()
