"""`lit_ft chat RUN_DIR|EXPORT_DIR`: talk to a fine-tuned generation model in the terminal.

Each turn's prompt is the whole conversation through the chat template of training (`lit_ft.serving.chat`); the
answer streams as it is generated. Ctrl-C stops the answer and keeps the program; Ctrl-C or Ctrl-D at the prompt
ends it (exit 0).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import threading
from pathlib import Path
from typing import Any, TextIO

from lit_ft.domains import PositiveInt
from lit_ft.errors import UserError, one_line

HELP = "talk to a fine-tuned generation model (sft) in the terminal: history through the chat template, streamed"
COMMANDS_HELP = ("commands: /reset forgets the conversation, /system TEXT sets the system message (/system alone "
                 "goes back to the run's own), /history shows the conversation as the model reads it, /exit quits; "
                 "Ctrl-C stops an answer")
USER_PROMPT = "you> "
BOT_PROMPT = "bot> "
PROMPT_START, PROMPT_END = "----- prompt -----", "----- end of prompt -----"


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="lit_ft chat", description=f"{HELP}. {COMMANDS_HELP}.")
    parser.add_argument("path", metavar="RUN_DIR|EXPORT_DIR",
                        help="a run directory (its best checkpoint), a .ckpt file, or an export directory")
    parser.add_argument("--which", choices=("best", "last"), default="best", help="checkpoint of a run directory")
    parser.add_argument("--max_new_tokens", type=PositiveInt, default=256, help="longest answer, in tokens")
    parser.add_argument("--temperature", type=float, default=0.0,
                        help="0 (the default) decodes greedily; above 0 samples at this temperature")
    parser.add_argument("--top_p", type=float, default=1.0, help="nucleus sampling's mass (with --temperature)")
    parser.add_argument("--seed", type=int, default=None, help="seed of sampling, for answers that repeat")
    parser.add_argument("--system", default=None,
                        help="system message (default: the run's data.system_prompt, if any; /system changes it)")
    parser.add_argument("--show_prompt", action="store_true",
                        help="print the whole prompt (history through the chat template) before each answer")
    parser.add_argument("--plugins", default="",
                        help="comma-separated local plugin modules of a third-party task (also $LIT_FT_PLUGINS)")
    args = parser.parse_args(argv)
    if args.temperature < 0:
        raise UserError(f"--temperature must be 0 (greedy) or more, got {args.temperature}")
    if not 0 < args.top_p <= 1:
        raise UserError(f"--top_p must be in (0, 1], got {args.top_p}")
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    from lit_ft import quiet
    from lit_ft.commands.config_args import plugin_specs
    from lit_ft.registry import load_plugin_module

    quiet.install()
    for spec in plugin_specs(["--plugins", args.plugins] if args.plugins else []):
        load_plugin_module(spec)
    from lit_ft.serving.chat import ChatSession
    from lit_ft.serving.chat_model import load_chat_model

    if args.seed is not None:
        import torch

        torch.manual_seed(args.seed)
    loaded = load_chat_model(Path(args.path), args.which)
    session = ChatSession(loaded, args.system, args.max_new_tokens, args.temperature, args.top_p)
    print(f"lit_ft chat: {loaded.source}; /help for the commands, Ctrl-C stops an answer, /exit or Ctrl-D quits",
          flush=True)
    Repl(session, args.show_prompt).loop()


class Repl:
    """The read-answer loop on stdin/stdout.

    Args:
        session: The conversation.
        show_prompt: Print the whole prompt before each answer.
        out: Where answers go.
    """

    def __init__(self, session: Any, show_prompt: bool = False, out: TextIO = sys.stdout) -> None:
        self.session = session
        self.show_prompt = show_prompt
        self.out = out

    def loop(self) -> None:
        """Until /exit, Ctrl-D or Ctrl-C at the prompt."""
        with contextlib.suppress(ImportError):
            import readline  # noqa: F401  (line editing and history in input(), where the platform has it)
        while True:
            try:
                line = input(USER_PROMPT)
            except (EOFError, KeyboardInterrupt):
                self.out.write("\n")
                return
            if not self.command(line.strip()):
                return

    def command(self, line: str) -> bool:
        """Handle one line; False ends the chat."""
        name, _, rest = line.partition(" ")
        if not line:
            return True
        if name in ("/exit", "/quit"):
            return False
        if name == "/reset":
            self.session.reset()
            self.say("(conversation cleared)")
        elif name == "/system":
            self.session.system = rest.strip() or None
            self.say("(system message set)" if self.session.system else "(system message: the run's own, if any)")
        elif name == "/history":
            self.show_history()
        elif name == "/help":
            self.say(COMMANDS_HELP)
        elif name.startswith("/") and " " not in name and len(name) > 1 and name[1:].isalpha():
            self.say(f"unknown command {name}; {COMMANDS_HELP}")
        else:
            self.answer(line)
        return True

    def answer(self, text: str) -> None:
        """Stream the answer to `text`; Ctrl-C stops it (what was generated so far stays in the history)."""
        try:
            if self.show_prompt:
                self.show(self.session.prompt(text))
            stop = threading.Event()
            self.out.write(BOT_PROMPT)
            with contextlib.closing(self.session.reply(text, stop)) as pieces:
                for piece in pieces:
                    self.out.write(piece)
                    self.out.flush()
            self.out.write("\n")
        except KeyboardInterrupt:
            self.out.write(" [stopped]\n")
        except UserError as err:
            self.out.write(f"\nlit_ft: error: {one_line(str(err))}\n")
        self.out.flush()

    def show_history(self) -> None:
        try:
            self.show(self.session.history())
        except UserError as err:
            self.say(f"lit_ft: error: {one_line(str(err))}")

    def say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def show(self, prompt: str) -> None:
        self.say(f"{PROMPT_START}\n{prompt}\n{PROMPT_END}")
