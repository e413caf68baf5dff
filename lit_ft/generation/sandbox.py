"""Run a generated Python program plus assert-style tests, with a verdict the program cannot forge.

Threat model and guarantees per mode: docs/sandbox.md. In short, three processes take part:

- the **trainer** (this side) starts the judge, sends it the job on a pipe, enforces the wall clock, reads the verdict
  from a pipe only the judge holds, and removes whatever the run left; nothing a program does raises here;
- the **judge** (`lit_ft/generation/sandbox_child.py`) starts the program process, then runs the setup and the tests
  itself, calling the program's functions through proxies that carry only plain data;
- the **program** process runs the generated code in a fresh interpreter with resource limits.

Modes (`mode=`; `auto`, the default, is `namespaces` or a refusal, probed once per process by `sandbox_plan`):

- `namespaces`: new user, pid, network, IPC, UTS and mount namespaces. The program sees a size-capped tmpfs root with
  read-only system directories only (no project, data, home or host /tmp), no network at all (Unix sockets
  included), its own SysV IPC, no way to make further user namespaces (so no mount of its own past `disk_mb`), and
  every process dies with it.
- `unsafe_user` (root, opt-in with `allow_unsafe`): the program runs as a uid of its own, so the verdict and the
  trainer are out of its reach, but an exec of another program (`_posixsubprocess.fork_exec`, C code) leaves Python's
  audit hook behind: the network, world-readable files and world-writable directories are reachable.
- `unsafe` (opt-in with `allow_unsafe`): the program runs as the trainer's own user; no guarantee at all.

Every mode: the judge and whatever it starts run under `memory_mb` of address space and the CPU-seconds limit too.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import pwd
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from lit_ft.errors import UserError

OUTPUT_CAP = 64 * 1024
"""Bytes of the program's combined stdout and stderr kept in `SandboxResult.output` (the tail)."""
FILE_SIZE_MB = 16
"""RLIMIT_FSIZE: the largest file, captured output included, the program may write."""
DISK_MB = 64
"""Default size of the namespaces mode's tmpfs: everything the program writes (work dir, /tmp, /dev/shm) together."""
MAX_PROCESSES = 16
"""RLIMIT_NPROC: processes and threads (per sandbox inside a user namespace, per user id otherwise)."""
MAX_OPEN_FILES = 64
MODES = ("auto", "namespaces", "unsafe_user", "unsafe")
UNSAFE_MODES = ("unsafe_user", "unsafe")
"""Modes that do not isolate the program: they run only with `allow_unsafe` (docs/sandbox.md says what leaks)."""
UNSAFE_REACH = {"unsafe_user": "the network and world-readable files through an exec of another program",
                "unsafe": "your files, the reference data and its own verdict"}
"""What each unsafe mode leaves in the program's reach (named in the refusal)."""
OPTION_HINT = "model.task_options.code_sandbox"
"""Where the mode is chosen on the command line (named in errors)."""
ALLOW_HINT = "model.task_options.allow_unsafe_sandbox"
"""Where the opt-in to an unsafe mode is given on the command line (named in errors)."""
USER_UID_BASE = 2_000_000_000
"""`unsafe_user` mode: the program's uid is this plus the judge's pid (unique while the run lasts, outside any real
range)."""
EXEC_EVENTS = ("os.exec", "os.posix_spawn", "os.spawn", "os.system", "subprocess.Popen", "ctypes.dlopen")
"""Audit events refused outside namespaces: another program or raw C calls would not see the hook."""
NETWORK_EVENTS = ("socket.__new__", "socket.connect", "socket.bind", "socket.sendto", "socket.sendmsg", *EXEC_EVENTS)
_CHILD_SOURCE = Path(__file__).with_name("sandbox_child.py")


@dataclass
class SandboxResult:
    """The outcome of one program: `passed` only when the judge ran every test and said so."""

    passed: bool
    error: str = ""
    """Why it failed, one line: `test 2 failed: assert f(3) == 4: AssertionError`, `program raised: ...`."""
    timed_out: bool = False
    """The wall clock (or the CPU-seconds limit) ran out."""
    output: str = ""
    """The program's (and the failing test's) stdout and stderr together, the last `OUTPUT_CAP` bytes."""


@dataclass(frozen=True)
class SandboxPlan:
    """How this machine runs sandboxes (probed once per mode, see `sandbox_plan`)."""

    mode: str
    """`namespaces`, `unsafe_user` or `unsafe` (never `auto`)."""
    python: str
    """The judge's and program's interpreter: this one, or a system one that `nobody` can run."""
    judge_user: tuple[int, int] | None = None
    """(uid, gid) the judge runs as (root drops to nobody); None: the trainer's own."""
    blocked_events: tuple[str, ...] = ()


def run_tests(
    program: str, tests: list[str], timeout: float = 10.0, setup: str = "", memory_mb: int = 512,
    mode: str = "auto", disk_mb: int = DISK_MB, allow_unsafe: bool = False,
) -> SandboxResult:
    """Run `program`, then `setup`, then each assert-style test; never raises for anything the program does.

    Args:
        program: Python source, for example a model's generated solution.
        tests: Python statements (MBPP's `assert f(1) == 2`); a test fails when it raises.
        timeout: Wall-clock seconds before every process of the run is killed (CPU seconds: this plus two).
        setup: Code run after the program and before the tests (MBPP's `test_setup_code`, which may use the
            program's classes).
        memory_mb: Address-space limit of each process of the run, the judge's included; an allocation beyond it
            raises MemoryError (the judge then reports a failure naming the limit).
        mode: `auto` (= `namespaces`), `namespaces`, `unsafe_user` or `unsafe` (see docs/sandbox.md).
        disk_mb: Size cap of all the program's writable space in `namespaces` mode (RLIMIT_FSIZE caps each file).
        allow_unsafe: Run an unsafe mode (`unsafe_user`, `unsafe`) when asked for one; without it they are refused.
    """
    plan = sandbox_plan(mode, allow_unsafe)  # a UserError: the user's configuration, raised before any program runs
    try:
        return _run(plan, program, list(tests), setup, timeout, memory_mb, disk_mb)
    except Exception as exc:  # nothing a program does may raise in the trainer
        return SandboxResult(False, f"sandbox failure: {type(exc).__name__}: {exc}")


@functools.cache
def sandbox_plan(mode: str = "auto", allow_unsafe: bool = False) -> SandboxPlan:
    """Probe, once per mode, which interpreter and isolation this machine supports; UserError when `mode` can't run
    here, or is unsafe and `allow_unsafe` is false."""
    if mode == "user":  # the earlier name of unsafe_user, which then ran without an opt-in
        raise UserError(f"code sandbox mode 'user' ({OPTION_HINT}) is now 'unsafe_user' and needs {ALLOW_HINT} true "
                        "(an exec of another program escapes its audit hook); use namespaces (see docs/sandbox.md)")
    if mode not in MODES:
        raise UserError(f"unknown code sandbox mode {mode!r} ({OPTION_HINT}); choose from {list(MODES)}")
    if not isinstance(allow_unsafe, bool):
        raise UserError(f"{ALLOW_HINT} must be true or false, got {allow_unsafe!r}")
    if mode in UNSAFE_MODES and not allow_unsafe:
        raise UserError(f"code sandbox mode {mode} does not isolate generated code (it can reach "
                        f"{UNSAFE_REACH[mode]}); set {ALLOW_HINT} true to run it anyway, or use {OPTION_HINT} "
                        "namespaces (see docs/sandbox.md)")
    if (os.name != "posix" or not sys.platform.startswith("linux")) and mode != "unsafe":
        raise UserError(f"the code sandbox needs Linux (this is {sys.platform}); set {OPTION_HINT} unsafe and "
                        f"{ALLOW_HINT} true to run generated code as your own user anyway (see docs/sandbox.md)")
    root = os.geteuid() == 0
    if mode in ("auto", "namespaces") and (plan := _namespaces_plan()) is not None:
        return plan
    plan = choose_fallback(mode, root, _interpreter(_nobody()) if root and mode == "unsafe_user" else None)
    if plan.mode == "unsafe_user" and not _works(plan):  # root of a container that cannot switch uids, say
        raise UserError(f"mode unsafe_user does not work here (a trial program failed to run as a uid of its own); "
                        f"set {OPTION_HINT} unsafe to run generated code as your own user (see docs/sandbox.md)")
    return plan


@functools.cache
def _namespaces_plan() -> SandboxPlan | None:
    """The namespaces plan when a real trial run works here (probed once per process, for `auto` and `namespaces`)."""
    nobody = _nobody() if os.geteuid() == 0 else None
    python = _interpreter(nobody)
    plan = SandboxPlan("namespaces", python, nobody) if python else None
    return plan if plan and _works(plan) else None


def choose_fallback(mode: str, root: bool, python: str | None) -> SandboxPlan:
    """The plan when namespaces are unavailable (or not asked for): only an unsafe mode that was asked for by name
    (`sandbox_plan` has checked the opt-in); `auto` never falls back, since no other mode isolates the program."""
    if mode == "unsafe":
        return SandboxPlan("unsafe", os.path.realpath(sys.executable), None, NETWORK_EVENTS)
    if mode == "unsafe_user" and root and python is not None:
        return SandboxPlan("unsafe_user", python, _nobody(), NETWORK_EVENTS)
    if mode == "unsafe_user":
        raise UserError("mode unsafe_user needs the trainer to run as root (to start programs as a uid of their "
                        f"own); set {OPTION_HINT} unsafe to run generated code as your own user (see docs/sandbox.md)")
    raise UserError(f"pass@1 cannot isolate generated code: user namespaces are unavailable here (kernel, AppArmor "
                    "or seccomp forbid them). Run where unprivileged user namespaces work, or set "
                    f"{OPTION_HINT} unsafe_user (as root) or unsafe, with {ALLOW_HINT} true, to run it with the "
                    "leaks docs/sandbox.md lists")


def _works(plan: SandboxPlan) -> bool:
    try:
        return _run(plan, "x = 1", ["assert x == 1"], "", 30.0, 256, 4).passed
    except Exception:
        return False


def _nobody() -> tuple[int, int]:
    try:
        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except KeyError:
        return 65534, 65534


@functools.cache
def _interpreter(user: tuple[int, int] | None) -> str | None:
    """This process's interpreter, or a system one when `user` cannot run it (say a pyenv under /root)."""
    own = os.path.realpath(sys.executable)
    if user is None:
        return own
    candidates = dict.fromkeys([own, *(shutil.which(n, path="/usr/local/bin:/usr/bin:/bin") for n in
                                       (f"python{sys.version_info[0]}.{sys.version_info[1]}", "python3"))])
    return next((c for c in candidates if c and _runs_as(c, user)), None)


def _runs_as(python: str, user: tuple[int, int]) -> bool:
    code = "import json, ctypes, resource, select"
    try:
        done = subprocess.run([python, "-I", "-S", "-c", code], cwd="/", env={"PATH": "/usr/bin:/bin"},
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              timeout=30, user=user[0], group=user[1], extra_groups=[])
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _limits(timeout: float, memory_mb: int) -> dict[str, int]:
    return {**_judge_limits(timeout, memory_mb), "RLIMIT_NPROC": MAX_PROCESSES, "RLIMIT_NOFILE": MAX_OPEN_FILES}


def _judge_limits(timeout: float, memory_mb: int) -> dict[str, int]:
    """The judge's own limits, which every process it starts inherits: the program can make it decode (or a test
    can make it build) far more than the program itself may hold, and its user's process count is shared."""
    return {"RLIMIT_CPU": int(timeout) + 2, "RLIMIT_AS": memory_mb * 2**20, "RLIMIT_FSIZE": FILE_SIZE_MB * 2**20,
            "RLIMIT_CORE": 0}


def _run(plan: SandboxPlan, program: str, tests: list[str], setup: str, timeout: float, memory_mb: int,
         disk_mb: int) -> SandboxResult:
    read_fd, write_fd = os.pipe()
    workdir = None if plan.mode == "namespaces" else tempfile.mkdtemp(prefix="lit_ft_sandbox_")
    proc, uid = None, None
    try:
        with tempfile.TemporaryFile() as output:
            proc = _start_judge(plan, output, write_fd, workdir)
            report_fd = write_fd  # the same number in the judge (pass_fds)
            os.close(write_fd)
            write_fd = -1
            uid = USER_UID_BASE + proc.pid if plan.mode == "unsafe_user" else None
            job = {"mode": plan.mode, "program": program, "setup": setup, "tests": tests, "report_fd": report_fd,
                   "limits": _limits(timeout, memory_mb), "judge_limits": _judge_limits(timeout, memory_mb),
                   "memory_mb": memory_mb, "blocked_events": plan.blocked_events,
                   "python": plan.python, "source": _child_source(), "disk_mb": disk_mb,
                   "workdir": workdir, "program_user": (uid, uid), "judge_user": plan.judge_user}
            if workdir and uid is not None:
                os.chown(workdir, uid, uid)
            _send_job(proc, job)
            timed_out, report = _wait(proc, read_fd, timeout, uid)
            return _result(timed_out, report, _tail(output), timeout, memory_mb)
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)
        if proc is not None and proc.returncode is None:  # an error of our own midway: still end the run
            with contextlib.suppress(OSError):
                os.killpg(proc.pid, signal.SIGKILL)
            if uid is not None:
                _remove_user_traces(uid)
            proc.wait()
        if workdir:
            remove_tree(workdir)


@functools.cache
def _child_source() -> str:
    return _CHILD_SOURCE.read_text()


def _start_judge(plan: SandboxPlan, output: IO[bytes], report_fd: int, workdir: str | None) -> subprocess.Popen:
    user = plan.judge_user if plan.mode == "namespaces" else None  # unsafe_user: the judge drops root itself
    extra: dict[str, Any] = {"user": user[0], "group": user[1], "extra_groups": []} if user else {}
    return subprocess.Popen(
        [plan.python, "-I", "-S", "-B", "-c", _child_source(), "judge"],
        cwd=workdir or "/", env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, stdin=subprocess.PIPE,
        stdout=output, stderr=output, pass_fds=(report_fd,), start_new_session=True,
        **extra,
    )


def _send_job(proc: subprocess.Popen, job: dict[str, Any]) -> None:
    """The job by stdin, never through a file others could write: first how to start the program, then the setup
    and the tests, which the judge reads only once the program's side has been forked off."""
    assert proc.stdin is not None
    secret = {"setup": job.pop("setup"), "tests": job.pop("tests")}
    with contextlib.suppress(BrokenPipeError):
        for message in (job, secret):
            data = json.dumps(message).encode()
            proc.stdin.write(len(data).to_bytes(8, "big") + data)
    with contextlib.suppress(BrokenPipeError):
        proc.stdin.close()


def _wait(proc: subprocess.Popen, read_fd: int, timeout: float, uid: int | None) -> tuple[bool, dict[str, Any] | None]:
    """Read the judge's verdict until it exits or the wall clock runs out; then kill everything of the run.

    Returns (timed out, the verdict or None). The judge is the only other holder of the pipe, so end of file means
    it exited. `unsafe_user` mode's uid is the judge's pid plus a base: the judge stays a zombie (WNOWAIT) until the
    uid's processes are dead, so neither number is reused meanwhile.
    """
    deadline, data, timed_out = time.monotonic() + timeout, b"", True
    poller = select.poll()  # not select(): a trainer may hold descriptors above 1024
    poller.register(read_fd, select.POLLIN)
    while (left := deadline - time.monotonic()) > 0:
        if poller.poll(max(1, int(left * 1000))):
            chunk = os.read(read_fd, 65536)
            if not chunk:
                timed_out = False
                break
            data = (data + chunk)[-2**20:]
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT)
    if uid is not None:
        _remove_user_traces(uid)
    proc.wait()
    try:
        report = json.loads(data)
    except ValueError:
        return timed_out, None
    return timed_out, report if isinstance(report, dict) and not timed_out else None


def _tail(output: IO[bytes]) -> str:
    size = output.seek(0, os.SEEK_END)
    output.seek(max(0, size - OUTPUT_CAP))
    return output.read().decode(errors="replace")


def _result(timed_out: bool, report: dict[str, Any] | None, output: str, timeout: float,
            memory_mb: int) -> SandboxResult:
    if timed_out:
        return SandboxResult(False, f"timed out after {timeout:g} s; every process of the run was killed", True, output)
    if report is None:
        return SandboxResult(False, f"the judge gave no verdict (killed, or over its limits: memory_mb={memory_mb} "
                                    f"MiB, {int(timeout) + 2} CPU s)", False, output)
    if not report.get("ended"):
        return SandboxResult(report.get("passed") is True, str(report.get("error", "")), False, output)
    code = int(report.get("exit", 0))
    sig = code - 128 if code > 128 else 0
    if sig:
        name = signal.Signals(sig).name if sig in signal.valid_signals() else str(sig)
        return SandboxResult(False, f"killed by {name} (a resource limit, or the program's own doing)",
                             sig == signal.SIGXCPU, output)
    last = output.strip().splitlines()[-1:] or ["no output"]
    return SandboxResult(False, f"exited with status {code} before the tests finished ({last[0][:200]})", False, output)


def remove_tree(path: str | os.PathLike[str]) -> None:
    """Delete a file or directory tree of any depth and path length, whatever modes it has; never raises.

    Iterative, with one open directory at a time (walking down by name, back up by `..`), so a 100,000-deep tree
    needs neither recursion nor long paths nor many descriptors. Run it after every process that could move the
    tree has been killed.
    """
    with contextlib.suppress(OSError):
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            os.unlink(path)
            return
        fd = os.open(path, _DIR_FLAGS)
        names: list[str] = []  # the path from `path` down to `fd`
        stuck: set[tuple[int, int]] = set()  # directories that could not be emptied (skipped, not retried)
        while True:
            child = _empty_files(fd, stuck)
            if child is not None:
                with contextlib.suppress(OSError):
                    os.chmod(child, 0o700, dir_fd=fd, follow_symlinks=False)
                try:
                    down = os.open(child, _DIR_FLAGS, dir_fd=fd)
                except OSError:
                    info = os.stat(child, dir_fd=fd, follow_symlinks=False)
                    stuck.add((info.st_dev, info.st_ino))
                    continue
                os.close(fd)
                fd, names = down, [*names, child]
                continue
            if not names:
                os.close(fd)
                break
            up = os.open("..", _DIR_FLAGS, dir_fd=fd)
            info = os.fstat(fd)
            os.close(fd)
            fd, name = up, names.pop()
            try:
                os.rmdir(name, dir_fd=fd)
            except OSError:
                stuck.add((info.st_dev, info.st_ino))
        os.rmdir(path)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)


def _empty_files(fd: int, stuck: set[tuple[int, int]]) -> str | None:
    """Unlink the non-directories in `fd`; the name of a subdirectory still to empty, if any."""
    with contextlib.suppress(OSError):
        os.chmod(fd, 0o700)
    with os.scandir(fd) as entries:
        for entry in entries:
            if not entry.is_dir(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.name, dir_fd=fd)
                continue
            info = entry.stat(follow_symlinks=False)
            if (info.st_dev, info.st_ino) not in stuck:
                return entry.name
    return None


def _remove_user_traces(uid: int) -> None:
    """`unsafe_user` mode: kill the uid's processes, delete its files in the shared temporary dirs and its SysV IPC."""
    helper = shutil.which("kill", path="/usr/bin:/bin")
    python = [sys.executable, "-I", "-S", "-c", "import os; os.kill(-1, 9)"]
    command = [helper, "-KILL", "--", "-1"] if helper else python
    for _ in range(2):  # kill(-1) as the uid: every process of it at once, forks included (one pass is enough)
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(command, user=uid, group=uid, extra_groups=[], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    for shared in ("/tmp", "/var/tmp", "/dev/shm"):
        with contextlib.suppress(OSError), os.scandir(shared) as entries:
            for entry in entries:
                with contextlib.suppress(OSError):
                    info = entry.stat(follow_symlinks=False)
                    if info.st_uid == uid:
                        remove_tree(entry.path) if stat.S_ISDIR(info.st_mode) else os.unlink(entry.path)
    _remove_ipc(uid)


def _remove_ipc(uid: int) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for kind, remove in (("shm", libc.shmctl), ("sem", libc.semctl), ("msg", libc.msgctl)):
        with contextlib.suppress(OSError, ValueError):
            lines = Path(f"/proc/sysvipc/{kind}").read_text().splitlines()
            header = lines[0].split()
            for line in lines[1:]:
                row = dict(zip(header, line.split(), strict=False))
                if int(row["uid"]) == uid:
                    ident = int(row["shmid" if kind == "shm" else "semid" if kind == "sem" else "msqid"])
                    remove(ident, 0, 0) if kind == "sem" else remove(ident, 0, None)  # IPC_RMID

