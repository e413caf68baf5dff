"""Every command in the documentation runs, as written, from the repository root.

The test reads README.md, docs/**/*.md and the example plugin's README itself: every code block (fenced or
indented) is scanned for command lines (`lit_ft ...`, `.venv/bin/lit_ft ...`, `make ...`, `python ...`, `pip ...`,
...), and each document's commands run in order in one scratch checkout (so `--ckpt_path best` finds the fit
before it). A command added to the docs is run by this test without any change here; one that cannot run on
this machine must be listed in UNRUNNABLE with the reason, and that list must be exactly what the docs hold.

What this offline CPU machine lacks is swapped through LIT_FT_OVERLAY only (tests/stand_ins.py): the recipe's
backbone becomes a tiny model of its family, hub data the recipe's configs/offline piece, and a run lasts
2 optimizer steps. `lit_ft` commands run in-process (`lit_ft.commands.cli.main`), others as subprocesses.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from builders import SHARED_DATA, shared_data
from stand_ins import RECIPES, ROOT, overlays

from lit_ft.commands.cli import OVERLAY_ENV, main

DOCS = sorted(
    p.relative_to(ROOT).as_posix()
    for p in [ROOT / "README.md", *ROOT.glob("docs/**/*.md"), *ROOT.glob("plugins/*/README.md")]
)
COMMAND_WORDS = {"lit_ft", ".venv/bin/lit_ft", "make", "python", "python3", ".venv/bin/python", "pip", "wandb",
                 "tensorboard", "torchrun", "srun", "accelerate", "huggingface-cli", "hf", "bash", "sh", "curl"}
LIT_FT = {"lit_ft", ".venv/bin/lit_ft"}
# commands that cannot run inside the test suite, and why; must equal the set of such commands in the docs
UNRUNNABLE = {
    "lit_ft chat runs/sft_chat": "interactive (reads the terminal); tests/test_chat.py drives it in a pseudo-terminal",
    "make install": "creates a virtual environment and downloads packages (network)",
    "make test": "runs the whole test suite, this test included",
    "pip install -e .": "installs packages into the environment (network)",
    "pip install ./plugins/lit_ft_multiple_choice": "installs packages into the environment (network)",
    "pip install -e plugins/lit_ft_multiple_choice --no-deps": "installs into the environment the tests run in",
    "python -m pytest plugins -q": "runs the plugin's test suite, which the test suite runs already",
    "lit_ft export runs/quickstart --output_dir my_model --push_to_hub me/my-model":
        "uploads to the Hugging Face Hub (network, a token); tests/test_generation_export.py runs it up to the upload",
    # tests/test_multinode.py runs these on one machine (two node ranks of one CPU process each)
    "torchrun --nnodes 2 --nproc_per_node 8 --node_rank 0 --master_addr node01 --master_port 29500 -m lit_ft fit "
    "--config configs/sft_lima.yaml --config configs/strategy/multinode.yaml": "two GPU nodes",
    "torchrun --nnodes 2 --nproc_per_node 8 --node_rank 1 --master_addr node01 --master_port 29500 -m lit_ft fit "
    "--config configs/sft_lima.yaml --config configs/strategy/multinode.yaml": "two GPU nodes",
    "srun .venv/bin/lit_ft fit --config configs/sft_lima.yaml --config configs/strategy/multinode.yaml":
        "a SLURM allocation of two GPU nodes",
}


def code_blocks(text: str) -> Iterator[tuple[int, list[str]]]:
    """(first line number, lines) of every fenced block and every indented block after a blank line."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].lstrip().startswith("```"):
            start = i + 1
            i += 1
            while i < len(lines) and not lines[i].lstrip().startswith("```"):
                i += 1
            yield start + 1, lines[start:i]
        elif lines[i].startswith("    ") and lines[i].strip() and (i == 0 or not lines[i - 1].strip()):
            start = i
            while i < len(lines) and (lines[i].startswith("    ") or not lines[i].strip()):
                i += 1
            yield start + 1, lines[start:i]
            continue
        i += 1


def commands(doc: str) -> list[tuple[int, str]]:
    """(line number, command) of every command line in the document's code blocks, continuations joined."""
    return commands_in((ROOT / doc).read_text())


def commands_in(text: str) -> list[tuple[int, str]]:
    found = []
    for first, block in code_blocks(text):
        logical: list[tuple[int, str]] = []
        for n, line in enumerate(block, first):
            if logical and logical[-1][1].endswith("\\"):
                logical[-1] = (logical[-1][0], logical[-1][1][:-1].rstrip() + " " + line.strip())
            else:
                logical.append((n, line.strip()))
        for n, line in logical:
            command = re.split(r"\s+#\s", line, maxsplit=1)[0].strip()
            if command.split(" ", 1)[0] in COMMAND_WORDS:
                found.append((n, command))
    return found


def test_commands_are_found_in_fenced_and_indented_blocks() -> None:
    text = (
        "Intro `lit_ft inline` is prose.\n\n"
        "    lit_ft fit --config a.yaml \\\n      --trainer.max_steps 2   # a comment\n    lit_ft: output line\n\n"
        "```bash\nmake demo\npython -c 'print(1)'\n```\n\n"
        "- a list item\n    continued, not a block\n\n"
        "```python\nfrom lit_ft import Task\n```\n"
    )
    assert commands_in(text) == [(3, "lit_ft fit --config a.yaml --trainer.max_steps 2"), (8, "make demo"),
                                 (9, "python -c 'print(1)'")]


def test_the_docs_hold_commands_and_every_unrunnable_one_is_listed_with_its_reason() -> None:
    every = [c for doc in DOCS for _, c in commands(doc)]
    assert len(every) >= 20 and "lit_ft tasks" in every
    assert set(UNRUNNABLE) <= set(every), f"stale UNRUNNABLE entries: {set(UNRUNNABLE) - set(every)}"
    for command in every:
        if command not in UNRUNNABLE:
            assert not command.startswith(("make install", "pip ")), f"add '{command}' to UNRUNNABLE with why"


@pytest.mark.parametrize("doc", DOCS)
def test_commands_are_copy_pasteable(doc: str) -> None:
    for n, command in commands(doc):
        assert "..." not in command and "<" not in command, f"{doc}:{n}: not copy-pasteable: {command}"
        for word in shlex.split(command)[1:]:
            if word.startswith(("configs/", "plugins/")) and not word.endswith("/"):
                assert (ROOT / word).exists(), f"{doc}:{n}: {word} does not exist"


pytestmark = pytest.mark.usefixtures("single_thread")


def checkout(tmp_path: Path) -> Path:
    """A scratch repository root: the repo's configs and plugins, `.venv` (this interpreter's environment), and
    `../shared` next to it, so the documented relative paths resolve and run outputs stay out of the repo."""
    shared_data(".")
    (tmp_path / "shared").symlink_to(SHARED_DATA.parent, target_is_directory=True)
    repo = tmp_path / "repo"
    repo.mkdir()
    for name in ("configs", "plugins", "bench", "Makefile"):
        (repo / name).symlink_to(ROOT / name)
    (repo / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return repo


def recipe_of(argv: list[str]) -> Path | None:
    configs = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("--config", "-c")]
    recipes = [ROOT / c for c in configs if (ROOT / c) in RECIPES]
    return recipes[0] if recipes else None


def run_command(command: str, repo: Path, models: dict[str, Path], scratch: Path) -> str | None:
    """Run one documented command in `repo`; None when it succeeded, else what went wrong."""
    argv = shlex.split(command)
    recipe = recipe_of(argv)
    env = {OVERLAY_ENV: os.pathsep.join(map(str, overlays(recipe, models, scratch)))} if recipe else {}
    if argv[0] in LIT_FT:
        previous = dict(os.environ)
        os.environ.pop(OVERLAY_ENV, None)
        os.environ.update(env)
        try:
            main(argv[1:])
        except SystemExit as done:
            if done.code not in (0, None):
                return f"exit status {done.code}"
        finally:
            os.environ.clear()
            os.environ.update(previous)
        return None
    done = subprocess.run(argv, cwd=repo, capture_output=True, text=True, timeout=900, env={**os.environ, **env})
    return None if done.returncode == 0 else f"exit status {done.returncode}: {done.stderr[-2000:]}"


def curl_in_python(argv: list[str]) -> str | None:
    """A documented `curl` request (`-s`, `-X METHOD`, `-H 'Name: value'`, `-d BODY`, the URL) sent with urllib,
    where no curl is installed; None when the server answered 2xx, else what went wrong."""
    import urllib.error
    import urllib.request

    method, headers, body, url = None, {}, None, None
    words = iter(argv[1:])
    for word in words:
        if word == "-X":
            method = next(words)
        elif word == "-H":
            name, _, value = next(words).partition(":")
            headers[name.strip()] = value.strip()
        elif word == "-d":
            body = next(words).encode()
        elif not word.startswith("-"):
            url = word
    assert url is not None, f"no URL in {argv}"
    request = urllib.request.Request(url, data=body, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=300) as answer:
            answer.read()
    except urllib.error.HTTPError as err:
        return f"HTTP {err.code}: {err.read().decode()[-2000:]}"
    return None


class Servers:
    """The `lit_ft serve` commands of a document, each started in the background on a free port (the port written
    in the docs may be taken on this machine: it is swapped, in the serve command and in the `curl` commands that
    name it), ready once `/health` answers; stopped with SIGTERM at the document's end, which must exit 0."""

    def __init__(self, repo: Path) -> None:
        self.repo = repo
        self.ports: dict[str, str] = {}
        self.running: list[subprocess.Popen[bytes]] = []

    def with_ports(self, command: str) -> str:
        for documented, free in self.ports.items():
            command = command.replace(f":{documented}", f":{free}")
        return command

    def start(self, argv: list[str]) -> str | None:
        import socket
        import time
        import urllib.request

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = str(s.getsockname()[1])
        if "--port" in argv:
            self.ports[argv[argv.index("--port") + 1]] = port
            argv[argv.index("--port") + 1] = port
        else:
            self.ports["8000"] = port
            argv += ["--port", port]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        server = subprocess.Popen([sys.executable, "-m", "lit_ft", *argv[1:]], cwd=self.repo, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.running.append(server)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and server.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
                    if answer.status == 200:
                        return None
            except OSError:
                time.sleep(0.5)
        return f"the server did not come up (exit status {server.poll()})"

    def stop(self) -> list[str]:
        """SIGTERM each server; what went wrong (an exit status other than 0)."""
        problems = []
        for server in self.running:
            server.send_signal(signal.SIGTERM)
            try:
                code = server.wait(timeout=90)
            except subprocess.TimeoutExpired:
                server.kill()
                code = server.wait()
            if code != 0:
                problems.append(f"a server exited {code} on SIGTERM: {server.stderr.read().decode()[-2000:]}"
                                if server.stderr else f"a server exited {code} on SIGTERM")
        return problems


@pytest.mark.parametrize("doc", DOCS)
def test_documented_commands_run(doc: str, stand_in_models: dict[str, Path], tmp_path: Path,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    runnable = [(n, c) for n, c in commands(doc) if c not in UNRUNNABLE]
    if not runnable:
        pytest.skip(f"{doc} has no runnable commands")
    repo = checkout(tmp_path)
    monkeypatch.chdir(repo)
    servers = Servers(repo)
    try:
        for n, command in runnable:
            argv = shlex.split(command)
            if argv[0] in LIT_FT and argv[1:2] == ["serve"]:
                failure = servers.start(argv)
            elif argv[0] == "curl" and shutil.which("curl") is None:  # a machine without curl: its requests
                failure = curl_in_python(shlex.split(servers.with_ports(command)))
            elif argv[0] == "curl":  # --fail: an HTTP error status is a failed command
                failure = run_command(servers.with_ports(command).replace("curl ", "curl --fail ", 1), repo,
                                      stand_in_models, tmp_path / f"overlay_{n}")
            else:
                failure = run_command(command, repo, stand_in_models, tmp_path / f"overlay_{n}")
            assert failure is None, f"{doc}:{n}: `{command}` failed: {failure}"
    finally:
        stopped = servers.stop()
    assert not stopped, f"{doc}: {stopped}"
