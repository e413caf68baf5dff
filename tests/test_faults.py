"""Faults under the shipped defaults: the quickstart recipe as shipped (progress display on, W&B offline and CSV
loggers) on a tiny model, stopped by kill -9, SIGTERM or Ctrl-C and resumed, or short of disk room.

Real `lit_ft` subprocesses, as a pipe and in a pseudo-terminal. A `sitecustomize` module (tests/stall/) holds
training step 5 until the signal has arrived, so every stop lands at the same step; the resumed runs must end
where the uninterrupted run (same recipe, same data) ends.
"""

from __future__ import annotations

import hashlib
import json
import os
import pty
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch
from builders import write_sentiment_csvs
from helpers import cli

from lit_ft.commands.cli import run
from lit_ft.io import TMP_MARK
from lit_ft.training.interrupt import resume_command

QUICKSTART = "configs/quickstart.yaml"
STALL_DIR = Path(__file__).parent / "stall"
HELD_STEP = 5  # of 16: 8 batches an epoch, 2 epochs
TOTAL_STEPS = 16
STOPPED = "lit_ft: stopped by "


def fault_args(root: Path, bert: Path, data: dict[str, str]) -> list[str]:
    """`fit` of the quickstart recipe with its own progress display and loggers, on the tiny model and data."""
    return ["fit", "--config", QUICKSTART, "--model.backbone", str(bert), "--trainer.default_root_dir", str(root),
            "--data.init_args.source.train", data["train"], "--data.init_args.source.validation", data["validation"],
            "--data.init_args.source.test", "null", "--data.init_args.source.predict", "null",
            "--data.init_args.batch_size", "8", "--trainer.max_epochs", "2", "--export.enabled", "false"]


def fault_env(stall: str | None = None) -> dict[str, str]:
    env = {**os.environ, "WANDB_MODE": "offline"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # the `lit_ft` script
    env.pop("LIT_FT_STALL", None)
    env.pop("WANDB_SERVICE", None)  # this process's W&B service (the in-process runs): a user's shell has none
    if stall is not None:
        env["PYTHONPATH"] = f"{STALL_DIR}{os.pathsep}{env.get('PYTHONPATH', '')}"
        env["LIT_FT_STALL"] = stall
    return env


def wait_for(marker: Path, alive: object, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not marker.exists():
        assert alive(), "lit_ft ended before it reached the held step"  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out waiting for the held step"
        time.sleep(0.02)


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return write_sentiment_csvs(tmp_path_factory.mktemp("fault_data"))


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path, data: dict[str, str]) -> Path:
    """The uninterrupted run, in this process, with the same defaults."""
    root = tmp_path_factory.mktemp("straight") / "run"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WANDB_MODE", "offline")
        done = cli(*fault_args(root, tiny_bert, data))
        done.trainer.loggers[0].experiment.finish()
    return root


def last_step(root: Path) -> int:
    return int(torch.load(root / "checkpoints" / "last.ckpt", weights_only=True)["global_step"])


def assert_same_end(resumed: Path, straight: Path) -> None:
    """The resumed run trained every step and ends with the uninterrupted run's weights and metrics."""
    assert last_step(resumed) == TOTAL_STEPS
    a = torch.load(resumed / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(straight / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    names = sorted(p.name for p in (resumed / "metrics").glob("val_*.json"))
    assert names == sorted(p.name for p in (straight / "metrics").glob("val_*.json")) == ["val_epoch_1.json",
                                                                                         "val_epoch_2.json"]
    for name in names:
        got, want = (json.loads((r / "metrics" / name).read_text()) for r in (resumed, straight))
        assert got["step"] == want["step"] and got["metrics"] == pytest.approx(want["metrics"], abs=1e-6)
    rows = [(r / "csv" / "version_0" / "metrics.csv").read_text().splitlines() for r in (resumed, straight)]
    assert [r.split(",")[:2] for r in rows[0]] == [r.split(",")[:2] for r in rows[1]]  # epoch, step: each row once
    assert [p for p in resumed.rglob(f"*{TMP_MARK}*")] == []


def the_stop_line(stderr: str, name: str) -> str:
    """The one stop line (a terminal echoes `^C` before it on the same line, and ends lines with CR LF)."""
    lines = [line[line.index(STOPPED):].rstrip("\r") for line in stderr.splitlines() if STOPPED in line]
    assert len(lines) == 1, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    assert lines[0].startswith(f"{STOPPED}{name} at step "), lines[0]
    return lines[0]


def run_printed(line: str) -> subprocess.CompletedProcess[str]:
    """Run the resume command exactly as printed, through a shell."""
    command = line.split("resume with: ", 1)[1]
    assert command.startswith("lit_ft fit ") and command.endswith(" --ckpt_path last")
    return subprocess.run(command, shell=True, capture_output=True, text=True, env=fault_env(), timeout=600)


# ---- in this process: the progress display on a run resumed mid-epoch -----------------------------------------
def test_resume_mid_epoch_with_the_progress_display(
    tmp_path: Path, tiny_bert: Path, data: dict[str, str], straight: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lightning calls no `on_train_epoch_start` for an epoch resumed in its middle; the display used to fail
    there (KeyError 'train'). Ctrl-C (a KeyboardInterrupt) at step 5 leaves `last` of step 4."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    root = tmp_path / "run"
    args = [*fault_args(root, tiny_bert, data), "--checkpoint.every_n_train_steps", "2"]
    interrupted = [*args, "--trainer.callbacks+=helpers.InterruptAt", "--trainer.callbacks.step", str(HELD_STEP)]
    handler = signal.getsignal(signal.SIGINT)
    try:
        with pytest.raises(SystemExit):
            run(interrupted)
    finally:
        signal.signal(signal.SIGINT, handler)  # Lightning ignores further Ctrl-C while it shuts down
    err = capsys.readouterr().err
    line = [x for x in err.splitlines() if x.startswith(STOPPED)]
    assert line == [f"{STOPPED}Ctrl-C at step {HELD_STEP}; {root.absolute() / 'checkpoints' / 'last.ckpt'} holds "
                    f"step 4; resume with: {resume_command(interrupted)}"]
    assert last_step(root) == 4
    resumed = cli(*args, "--ckpt_path", "last")
    resumed.trainer.loggers[0].experiment.finish()
    out = capsys.readouterr().out
    assert "Epoch 1/2  8/8 batches" in out and "Epoch 2/2  8/8 batches" in out  # the resumed epoch's own line
    assert_same_end(root, straight)


def test_sigterm_during_validation_lets_it_finish_then_stops(
    tmp_path: Path, tiny_bert: Path, data: dict[str, str], straight: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM at the first batch of epoch 1's validation: the validation finishes (Lightning alone would stop in
    its middle), `last` holds step 8, the exit status is 143 and the resumed run ends as the uninterrupted one."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    root = tmp_path / "run"
    args = fault_args(root, tiny_bert, data)
    with pytest.raises(SystemExit) as stopped:
        run([*args, "--trainer.callbacks+=helpers.SigtermAt", "--trainer.callbacks.step", "8"])
    assert stopped.value.code == 143
    err = capsys.readouterr().err
    assert the_stop_line(err, "SIGTERM").startswith(f"{STOPPED}SIGTERM at step 8; ")
    assert last_step(root) == 8
    assert [p.name for p in (root / "metrics").glob("val_*.json")] == ["val_epoch_1.json"]
    first = json.loads((root / "metrics" / "val_epoch_1.json").read_text())["metrics"]
    assert first == pytest.approx(json.loads((straight / "metrics" / "val_epoch_1.json").read_text())["metrics"])
    resumed = cli(*args, "--ckpt_path", "last")
    resumed.trainer.loggers[0].experiment.finish()
    assert_same_end(root, straight)


def test_the_lightning_signal_flag_lit_ft_defers_exists() -> None:
    """`lit_ft.training.interrupt` sets Lightning's private SIGTERM flag (read publicly as
    `trainer.received_sigterm`)."""
    from lightning.pytorch import Trainer

    trainer = Trainer(logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer._signal_connector.received_sigterm = True
    assert trainer.received_sigterm is True


def test_resume_command_replaces_a_given_checkpoint() -> None:
    assert resume_command(["fit", "--config", "a b.yaml", "--ckpt_path", "best", "--x=1"]) == \
        "lit_ft fit --config 'a b.yaml' --x=1 --ckpt_path last"
    assert resume_command(["fit", "--ckpt_path=last"]) == "lit_ft fit --ckpt_path last"
    # a run started with --overwrite resumes without it (the line continues the run; it never resets it)
    assert resume_command(["fit", "--overwrite", "true", "--trainer.max_epochs", "3", "--overwrite=true"]) == \
        "lit_ft fit --trainer.max_epochs 3 --ckpt_path last"


# ---- real subprocesses ---------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sigterm_saves_the_step_exits_143_and_the_printed_command_resumes(
    tmp_path: Path, tiny_bert: Path, data: dict[str, str], straight: Path
) -> None:
    """SIGTERM (what a scheduler sends before preemption), output to pipes."""
    root = tmp_path / "run"
    marker = tmp_path / "held"
    proc = subprocess.Popen([sys.executable, "-m", "lit_ft", *fault_args(root, tiny_bert, data)], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=fault_env(f"step:{HELD_STEP}:{marker}"))
    wait_for(marker, lambda: proc.poll() is None)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 143, err[-3000:]
    line = the_stop_line(err, "SIGTERM")
    assert line.startswith(f"{STOPPED}SIGTERM at step {HELD_STEP};")
    assert err.splitlines()[-1] == line  # the last word on stderr, a line of its own
    assert f"holds step {HELD_STEP};" in line and last_step(root) == HELD_STEP  # the step in progress, finished
    assert "\r" not in out and "Epoch 1/2" not in out  # a pipe gets no bars, and the stopped epoch no end line
    again = run_printed(line)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Traceback" not in again.stderr and "Epoch 2/2  8/8 batches" in again.stdout
    assert_same_end(root, straight)


@pytest.mark.slow
def test_ctrl_c_in_a_terminal_saves_the_step_exits_130_and_resumes(
    tmp_path: Path, tiny_bert: Path, data: dict[str, str], straight: Path
) -> None:
    """Ctrl-C typed in a pseudo-terminal (SIGINT to the foreground process group), live bars drawn."""
    root = tmp_path / "run"
    marker = tmp_path / "held"
    args = fault_args(root, tiny_bert, data)
    status, text = in_terminal([sys.executable, "-m", "lit_ft", *args], fault_env(f"step:{HELD_STEP}:{marker}"),
                               marker)
    assert status == 130, text[-3000:]
    line = the_stop_line(text, "Ctrl-C")
    assert line.startswith(f"{STOPPED}Ctrl-C at step {HELD_STEP};")
    assert line.endswith(resume_command(args)) and last_step(root) == HELD_STEP
    assert "\r" in text  # the live bars were drawn
    command = line.split("resume with: ", 1)[1]
    status, text = in_terminal(["/bin/sh", "-c", command], fault_env(), None)
    assert status == 0 and "Traceback" not in text, text[-3000:]
    assert_same_end(root, straight)


def in_terminal(argv: list[str], env: dict[str, str], ctrl_c_at: Path | None) -> tuple[int, str]:
    """Run `argv` on a pseudo-terminal; type Ctrl-C there once `ctrl_c_at` exists. Returns (status, output)."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: the terminal is its controlling terminal, its process group the foreground one
        os.execve(argv[0], argv, env)
    chunks: list[bytes] = []

    def drain() -> None:
        while True:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the child side closed
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    if ctrl_c_at is not None:
        wait_for(ctrl_c_at, lambda: os.waitpid(pid, os.WNOHANG) == (0, 0))
        os.write(fd, b"\x03")
    _, status = os.waitpid(pid, 0)
    reader.join(timeout=30)
    os.close(fd)
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_kill_9_then_resume(tmp_path: Path, tiny_bert: Path, data: dict[str, str], straight: Path) -> None:
    """SIGKILL at step 5: nothing runs at the kill; `last` of step 4 (saved every 2 steps) resumes."""
    root = tmp_path / "run"
    marker = tmp_path / "held"
    args = [*fault_args(root, tiny_bert, data), "--checkpoint.every_n_train_steps", "2"]
    proc = subprocess.Popen([sys.executable, "-m", "lit_ft", *args], text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=fault_env(f"step:{HELD_STEP}:{marker}"))
    wait_for(marker, lambda: proc.poll() is None)
    proc.kill()
    proc.communicate(timeout=60)
    assert last_step(root) == 4
    done = subprocess.run([sys.executable, "-m", "lit_ft", *args, "--ckpt_path", "last"], capture_output=True,
                          text=True, env=fault_env(), timeout=600)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr[-3000:]
    assert_same_end(root, straight)


# ---- no room for a checkpoint --------------------------------------------------------------------------------
def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_no_room_line(stderr: str, directory: Path, reason: str) -> int:
    lines = [line for line in stderr.splitlines() if line.startswith("lit_ft: error: ")]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr[-3000:]
    line = lines[0]
    assert f"could not write the checkpoint '{directory}/" in line and reason in line, line
    assert f" bytes in {directory}" in line and "the previous checkpoints (" in line, line
    return int(line.split("it needs about ", 1)[1].split(" bytes", 1)[0].replace(",", ""))


@pytest.mark.slow
def test_file_size_limit_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(
    tmp_path: Path, tiny_bert: Path, data: dict[str, str], straight: Path
) -> None:
    """`ulimit -f` below the size of `last.ckpt` when a third epoch ends: EFBIG, not SIGXFSZ's silent death."""
    import resource

    root = tmp_path / "run"
    shutil.copytree(straight, root)
    checkpoints = root / "checkpoints"
    before = digest(checkpoints / "last.ckpt")
    size = (checkpoints / "last.ckpt").stat().st_size
    limit = size * 2 // 3  # a weights-only best checkpoint (about a third) still fits

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    args = [*fault_args(root, tiny_bert, data), "--trainer.max_epochs", "3", "--ckpt_path", "last"]
    done = subprocess.run([sys.executable, "-m", "lit_ft", *args], capture_output=True, text=True,
                          env=fault_env(), timeout=600, preexec_fn=limited)
    assert done.returncode == 2, done.stderr[-3000:]
    needed = assert_no_room_line(done.stderr, checkpoints, f"file-size limit ({limit:,} bytes)")
    assert needed == size  # the previous `last.ckpt`'s size
    assert digest(checkpoints / "last.ckpt") == before  # the previous good checkpoint, whole
    assert [p.name for p in checkpoints.iterdir() if p.name.startswith(".")] == []


@pytest.mark.slow
def test_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(
    tmp_path: Path, tiny_bert: Path, data: dict[str, str], straight: Path
) -> None:
    """A small tmpfs (in a user + mount namespace) that holds the run and a weights-only checkpoint, not `last`."""
    unshare = shutil.which("unshare")
    probe = tmp_path / "probe"
    probe.mkdir()
    if unshare is None or subprocess.run([unshare, "-rm", "mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                                          str(probe)], capture_output=True).returncode != 0:
        pytest.skip("no tmpfs to fill: `unshare -rm` (user and mount namespaces) or `mount -t tmpfs` is not allowed")
    disk = tmp_path / "disk"
    disk.mkdir()
    root = disk / "run"
    used = sum(p.stat().st_size + 4096 for p in straight.rglob("*") if p.is_file())
    size = (straight / "checkpoints" / "last.ckpt").stat().st_size
    args = [*fault_args(root, tiny_bert, data), "--trainer.max_epochs", "3", "--ckpt_path", "last"]
    script = (f"mount -t tmpfs -o size={used + size // 2} tmpfs {shlex.quote(str(disk))} && "
              f"cp -a {shlex.quote(str(straight))} {shlex.quote(str(root))} && "
              f"sha256sum {shlex.quote(str(root / 'checkpoints' / 'last.ckpt'))} >&2 && "
              f"{shlex.join([sys.executable, '-m', 'lit_ft', *args])}; rc=$?; "
              f"sha256sum {shlex.quote(str(root / 'checkpoints' / 'last.ckpt'))} >&2; "
              f"ls -a {shlex.quote(str(root / 'checkpoints'))} >&2; exit $rc")
    done = subprocess.run([unshare, "-rm", "/bin/sh", "-c", script], capture_output=True, text=True,
                          env=fault_env(), timeout=600)
    assert done.returncode == 2, done.stderr[-3000:]
    needed = assert_no_room_line(done.stderr, root / "checkpoints", "the disk is full")
    assert needed == size
    sums = [line.split()[0] for line in done.stderr.splitlines() if re.fullmatch(r"[0-9a-f]{64}  .*last\.ckpt", line)]
    assert len(sums) == 2 and sums[0] == sums[1]  # the previous good checkpoint, whole
    assert not any(TMP_MARK in line for line in done.stderr.splitlines())


def test_metric_file_over_the_file_size_limit_is_one_error_and_keeps_the_previous_file(tmp_path: Path) -> None:
    """A metric file (written like every lit_ft output) over `ulimit -f`: the write fails with EFBIG (SIGXFSZ
    ignored, as the CLI does), the error names the directory and the bytes, the previous file stays."""
    import resource

    target = tmp_path / "metrics" / "val_epoch_1.json"
    target.parent.mkdir()
    target.write_text('{"step": 8}')
    code = ("import signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); from lit_ft.io import write_text; "
            "write_text('{\"step\": 16, \"pad\": \"' + 'x' * 5000 + '\"}', sys.argv[1])")

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (1000, 1000))

    done = subprocess.run([sys.executable, "-c", code, str(target)], capture_output=True, text=True, timeout=120,
                          preexec_fn=limited)
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        f"lit_ft.no_room.NoRoomError: could not write the file '{target}': the file is larger than the file-size "
        f"limit (1,000 bytes); it needs about 5,023 bytes in {target.parent}: raise the limit (`ulimit -f "
        "unlimited`) and run again")
    assert target.read_text() == '{"step": 8}' and sorted(p.name for p in target.parent.iterdir()) == [target.name]
