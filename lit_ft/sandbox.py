"""Run a generated Python program plus assert-style tests in a separate, resource-limited process.

Not a security boundary like a VM or container (see docs/sandbox.md): it keeps buggy or runaway generated code
(infinite loops, fork bombs, huge allocations, network calls, stray files) away from the training process and
the machine. Layers, each probed once per process by `sandbox_plan()`:

- a fresh interpreter in isolated mode (`python -I -S -B`), its own temporary working directory (deleted after),
  a minimal environment, no inherited file descriptors beyond its output file and a report pipe;
- resource limits set in the child before any untrusted code runs (CPU seconds, address space, processes,
  file size, open files, no core dumps) and a wall-clock timeout that kills the whole process group;
- when the parent is root: the child runs as `nobody` (so the process limit applies and root's files are safe);
- no network: new user + network + pid namespaces (`unshare`) when the kernel allows them (only a loopback that is
  down, and every process dies with the runner); otherwise an audit hook in the child refuses socket creation and
  program launches (weaker: it only sees calls made through Python's audited APIs).

The child interpreter runs this file's own source (`-c`): the part below "child side" executes in the sandbox.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import marshal
import os
import pwd
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

OUTPUT_CAP = 64 * 1024
"""Bytes of the program's combined stdout and stderr kept in `SandboxResult.output` (the tail)."""
FILE_SIZE_MB = 16
"""RLIMIT_FSIZE: the largest file, captured output included, the program may write."""
MAX_PROCESSES = 16
"""RLIMIT_NPROC: processes and threads (per sandbox inside a user namespace, per user id otherwise)."""
MAX_OPEN_FILES = 64
NAMESPACE_FLAGS = ("--user", "--net", "--pid", "--fork", "--kill-child")
EXEC_EVENTS = ("os.exec", "os.posix_spawn", "os.spawn", "os.system", "subprocess.Popen", "ctypes.dlopen")
"""Audit events refused with the fallback hook: another program or raw C calls would not see the hook."""
NETWORK_EVENTS = ("socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", *EXEC_EVENTS)
FORK_EVENTS = ("os.fork", "os.forkpty", *EXEC_EVENTS)
"""Refused only when the child must stay root, where RLIMIT_NPROC does not apply."""
_NETNS_PROBE = "import socket, sys; sys.exit([n for _, n in socket.if_nameindex()] != ['lo'])"
_CHILD_FLAG = "--lit-ft-sandbox-child"
_CHILD_HEADER = (
    "from __future__ import annotations\nimport builtins, marshal, os, sys\n"
    f"_CHILD_FLAG = {_CHILD_FLAG!r}\n"
)
_CHILD_MARK = "# --- child side"


@dataclass
class SandboxResult:
    """The outcome of one program: `passed` only when every test ran and the runner reported so."""

    passed: bool
    error: str = ""
    """Why it failed, one line: `test 2 failed: assert f(3) == 4: AssertionError`, `program raised: ...`."""
    timed_out: bool = False
    """The wall clock (or the CPU-seconds limit) ran out."""
    output: str = ""
    """The program's stdout and stderr together (tracebacks included), the last `OUTPUT_CAP` bytes."""


@dataclass(frozen=True)
class SandboxPlan:
    """How this machine runs sandboxes (probed once, see `sandbox_plan`)."""

    python: str
    """The child's interpreter: this one, or a system one that `nobody` can run."""
    prefix: tuple[str, ...] = ()
    """The namespace wrapper (`unshare ...`), empty when namespaces are unavailable."""
    user: tuple[int, int] | None = None
    """(uid, gid) the child runs as when the parent is root; None: the parent's own."""
    network: str = "audit-hook"
    """The active network layer: `netns` (namespaces) or `audit-hook` (the weaker fallback)."""
    blocked_events: tuple[str, ...] = ()


def run_tests(
    program: str, tests: list[str], timeout: float = 10.0, setup: str = "", memory_mb: int = 512
) -> SandboxResult:
    """Run `program`, then `setup`, then each assert-style test in one fresh sandboxed interpreter.

    Args:
        program: Python source, for example a model's generated solution.
        tests: Python statements (MBPP's `assert f(1) == 2`); a test fails when it raises.
        timeout: Wall-clock seconds before the whole process group is killed (the CPU-seconds limit is this plus two).
        setup: Code run after the program and before the tests (MBPP's `test_setup_code`, which may use the
            program's classes).
        memory_mb: Address-space limit of the interpreter; an allocation beyond it raises MemoryError.
    """
    if os.name != "posix":
        raise RuntimeError("lit_ft.sandbox needs a POSIX system (Linux, or macOS without namespaces)")
    plan, nonce = sandbox_plan(), secrets.token_hex(16)
    read_fd, write_fd = os.pipe()
    try:
        with tempfile.TemporaryDirectory(prefix="lit_ft_sandbox_", ignore_cleanup_errors=True) as workdir, \
                tempfile.TemporaryFile() as output:
            limits = _limits(timeout, memory_mb)
            _write_payload(workdir, plan, {"program": program, "setup": setup, "tests": list(tests),
                                           "limits": limits, "blocked_events": plan.blocked_events, "fd": write_fd})
            proc = _start(plan, workdir, output, write_fd, nonce)
            os.close(write_fd)
            write_fd = -1
            timed_out = _wait(proc, timeout)
            return _result(proc.returncode, timed_out, _read_report(read_fd, nonce), _tail(output), timeout)
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)


@functools.cache
def sandbox_plan() -> SandboxPlan:
    """Probe, once, which interpreter, user and network layer work on this machine."""
    user = _nobody() if os.geteuid() == 0 else None
    python = _interpreter(user)
    if python is None:  # root with no interpreter that `nobody` can run: stay root, refuse forks in the hook
        user, python = None, os.path.realpath(sys.executable)
    unshare = shutil.which("unshare")
    netns = unshare is not None and _probe([unshare, *NAMESPACE_FLAGS, python], _NETNS_PROBE, user)
    blocked = () if netns else NETWORK_EVENTS
    if os.geteuid() == 0 and user is None:
        blocked = tuple(dict.fromkeys((*blocked, *FORK_EVENTS)))
    prefix = (unshare, *NAMESPACE_FLAGS) if netns and unshare else ()
    return SandboxPlan(python, prefix, user, "netns" if netns else "audit-hook", blocked)


def _nobody() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


def _interpreter(user: tuple[int, int] | None) -> str | None:
    """This process's interpreter, or a system one when `user` cannot read it (say a pyenv under /root)."""
    own = os.path.realpath(sys.executable)
    if user is None:
        return own
    candidates = dict.fromkeys([own, *(shutil.which(n, path="/usr/local/bin:/usr/bin:/bin") for n in
                                       (f"python{sys.version_info[0]}.{sys.version_info[1]}", "python3"))])
    return next((c for c in candidates if c and _probe([c], "import json, re, math, collections", user)), None)


def _probe(command: list[str], code: str, user: tuple[int, int] | None) -> bool:
    try:
        done = subprocess.run([*command, "-I", "-S", "-c", code], cwd="/", env=_env("/"), stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30, **_as_user(user))
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _as_user(user: tuple[int, int] | None) -> dict[str, Any]:
    return {"user": user[0], "group": user[1], "extra_groups": []} if user else {}


def _env(workdir: str) -> dict[str, str]:
    return {"PATH": "/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8"}


def _limits(timeout: float, memory_mb: int) -> dict[str, int]:
    return {"RLIMIT_CPU": int(timeout) + 2, "RLIMIT_AS": memory_mb * 2**20, "RLIMIT_NPROC": MAX_PROCESSES,
            "RLIMIT_FSIZE": FILE_SIZE_MB * 2**20, "RLIMIT_NOFILE": MAX_OPEN_FILES, "RLIMIT_CORE": 0}


def _write_payload(workdir: str, plan: SandboxPlan, payload: dict[str, Any]) -> None:
    path = Path(workdir) / "payload.marshal"
    path.write_bytes(marshal.dumps(payload, 2))  # version 2: readable by any Python 3 the child may be
    if plan.user:
        for item in (workdir, path):
            os.chown(item, *plan.user)


@functools.cache
def _child_source() -> str:
    text = Path(__file__).read_text()
    return _CHILD_HEADER + text[text.rindex(_CHILD_MARK):]  # rindex: the mark also opens this file's constant


def _start(plan: SandboxPlan, workdir: str, output: IO[bytes], report_fd: int, nonce: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [*plan.prefix, plan.python, "-I", "-S", "-B", "-c", _child_source(), _CHILD_FLAG],
        cwd=workdir, env=_env(workdir), stdin=subprocess.PIPE, stdout=output, stderr=output,
        pass_fds=(report_fd,), start_new_session=True, **_as_user(plan.user),
    )
    assert proc.stdin is not None
    with contextlib.suppress(BrokenPipeError):  # the nonce goes by stdin: not in argv, env or files
        proc.stdin.write(nonce.encode() + b"\n")
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()
    return proc


def _wait(proc: subprocess.Popen, timeout: float) -> bool:
    """Wait for the child, then kill its process group; True when the wall clock ran out first."""
    deadline, pause, timed_out = time.monotonic() + timeout, 0.002, True
    while time.monotonic() < deadline:
        # WNOWAIT leaves the child a zombie, so its process-group id cannot be reused before the kill below
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            timed_out = False
            break
        time.sleep(pause)
        pause = min(pause * 2, 0.05)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return timed_out


def _read_report(fd: int, nonce: str) -> tuple[bool, str] | None:
    """The runner's `<nonce> <0|1> <error>` line; a program that exits early or forges a line has no nonce."""
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            data += chunk
    for line in reversed(data.decode(errors="replace").splitlines()):
        token, _, rest = line.partition(" ")
        if token == nonce and rest[:2] in ("0 ", "1 "):
            return rest[0] == "1", rest[2:]
    return None


def _tail(output: IO[bytes]) -> str:
    size = output.seek(0, os.SEEK_END)
    output.seek(max(0, size - OUTPUT_CAP))
    return output.read().decode(errors="replace")


def _result(code: int, timed_out: bool, report: tuple[bool, str] | None, output: str, timeout: float) -> SandboxResult:
    if timed_out:
        return SandboxResult(False, f"timed out after {timeout:g} s; its process group was killed", True, output)
    if report is not None:
        return SandboxResult(report[0], report[1], False, output)
    sig = -code if code < 0 else code - 128 if code > 128 else 0
    if sig:
        name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
        return SandboxResult(False, f"killed by {name} (a resource limit, or the program's own doing)",
                             sig == signal.SIGXCPU, output)
    last = output.strip().splitlines()[-1:] or ["no output"]
    return SandboxResult(False, f"exited with status {code} before the tests finished ({last[0][:200]})", False, output)


# --- child side: runs inside the sandboxed interpreter, sent as source after _CHILD_HEADER -----------------
# Only builtin modules at startup (a json or traceback import would cost more than the interpreter itself).


def _child_main() -> int:
    with open("payload.marshal", "rb") as f:
        payload = marshal.load(f)
    os.remove("payload.marshal")  # the tests stay out of the program's reach on disk
    _apply_limits(payload["limits"])
    nonce, runner_pid = sys.stdin.readline().strip(), os.getpid()
    if payload["blocked_events"]:
        _install_guard(frozenset(payload["blocked_events"]))
    passed, error = _execute(payload["program"], payload["setup"], payload["tests"])
    if os.getpid() != runner_pid:  # a process the program forked got here: only the runner reports
        os._exit(1)
    os.write(payload["fd"], f"{nonce} {int(passed)} {error}\n".encode(errors="replace"))
    return 0 if passed else 1


def _apply_limits(limits: dict[str, int]) -> None:
    import resource

    for name, value in limits.items():
        if (which := getattr(resource, name, None)) is None:
            continue
        hard = resource.getrlimit(which)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))


def _install_guard(blocked: frozenset[str]) -> None:
    def guard(event: str, args: tuple[Any, ...]) -> None:
        if event in blocked:
            raise PermissionError(f"sandbox: '{event}' is not allowed here")

    sys.addaudithook(guard)


def _execute(program: str, setup: str, tests: list[str]) -> tuple[bool, str]:
    namespace: dict[str, Any] = {"__name__": "__sandbox__", "__builtins__": builtins}
    stages = [("program", program), ("setup", setup), *((f"test {i}", t) for i, t in enumerate(tests, 1))]
    for stage, source in stages:
        try:
            exec(compile(source, f"<{stage}>", "exec", dont_inherit=True), namespace)
        except BaseException as exc:  # the program's failure, SystemExit and KeyboardInterrupt included
            return False, _describe(stage, source, exc)
    return True, ""


def _describe(stage: str, source: str, exc: BaseException) -> str:
    detail = type(exc).__name__
    try:  # either can fail after a MemoryError, or with stderr closed or at the file-size limit
        import traceback

        detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        traceback.print_exc()
    except Exception:
        pass
    where = f"{stage} failed: {source.strip()[:200]}" if stage.startswith("test") else f"{stage} raised"
    return " ".join(f"{where}: {detail}".split())


if __name__ == "__main__" and sys.argv[1:] == [_CHILD_FLAG]:
    sys.exit(_child_main())
