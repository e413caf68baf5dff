"""The sandbox's child side: sent as source (`python -I -S -B -c`) by `lit_ft.generation.sandbox`, never imported there.

Three roles, one file (standard library only):

- the **judge** (`judge`): started by the trainer, reads the job (program, setup, tests, limits) from stdin, starts
  the program process, then runs the setup and the tests itself. The program's names reach it as proxies: a call
  sends its arguments to the program process and gets plain data back (numbers, strings, bytes, lists, tuples,
  dicts, sets, a few `collections` types) or a handle. Comparisons, `assert` and the verdict happen here, in an
  interpreter the program never touches and cannot see; the verdict goes to the trainer on a pipe only the judge
  holds.
- the **init** (namespaces mode only): pid 1 of a new pid namespace, builds the program's file system (a size-capped
  tmpfs root, read-only system directories, no project, data or home), starts the program, reaps, and takes every
  process with it when it exits.
- the **program** (`program`): a fresh interpreter that runs the generated code and then answers the judge's calls.
"""

from __future__ import annotations

import builtins
import os
import sys

TYPE_CHECKING = False  # the typing module is not imported at run time: each sandbox starts two interpreters
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Alive = Callable[[], bool] | None
    Handle = Callable[[Any], int] | None

INNER_ID = 1000
"""The program's uid and gid inside the user namespace (the trainer's, or nobody's, outside)."""
SANDBOX_HOME = "/sandbox"
SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
DEVICES = ("null", "zero", "full", "random", "urandom")
MAX_MESSAGE = 64 * 2**20
CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_REMOUNT = 1, 2, 4, 8, 32
MS_BIND, MS_REC, MS_PRIVATE = 4096, 16384, 1 << 18
MNT_DETACH, PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 2, 1, 38
NAMESPACE_LIMITS = ("max_user_namespaces", "max_mnt_namespaces")
"""Set to 0 in the run's user namespace, so its program can create neither (nor, in a new user namespace, mounts)."""
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}


# --- messages: 8-byte length + JSON; values are tagged so tuples, sets and bytes survive -----------------------


def send(fd: int, message: object) -> None:
    import json

    data = json.dumps(message).encode()
    data = len(data).to_bytes(8, "big") + data
    while data:
        data = data[os.write(fd, data):]


def receive(fd: int, alive: Alive = None) -> Any:
    """The next message; EOFError when the other side is gone (`alive()` false while waiting, or end of pipe)."""
    import json

    size = int.from_bytes(_exactly(fd, 8, alive), "big")
    if size > MAX_MESSAGE:
        raise ValueError(f"a message of {size} bytes, over the {MAX_MESSAGE}-byte limit")
    return json.loads(_exactly(fd, size, alive))


def _exactly(fd: int, size: int, alive: Alive) -> bytes:
    import select

    chunks, left = [], size
    while left:
        if alive is not None:
            while not select.select([fd], [], [], 0.05)[0]:
                if not alive():
                    raise EOFError("the program process ended")
        chunk = os.read(fd, min(left, 2**20))
        if not chunk:
            raise EOFError("the program process ended")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def encode(value: Any, handle: Handle = None) -> Any:
    """Plain data as JSON-ready tagged lists; anything else becomes `handle(value)` (a TypeError without one)."""
    kind = type(value)
    if value is None or kind in (bool, int, float, str):
        return value
    for base in (int, float, str):
        if isinstance(value, base):
            return base(value)  # IntEnum, str subclasses: their plain value
    name = f"{kind.__module__}.{kind.__qualname__}"
    if name in _COLLECTIONS:
        items = list(value.items()) if isinstance(value, dict) else list(value)
        return [_COLLECTIONS[name], [encode(x, handle) if not isinstance(value, dict) else
                                     [encode(x[0], handle), encode(x[1], handle)] for x in items]]
    for container, tag in ((tuple, "t"), (list, "l"), (set, "s"), (frozenset, "f")):
        if isinstance(value, container):
            return [tag, [encode(x, handle) for x in value]]
    if isinstance(value, dict):
        return ["d", [[encode(k, handle), encode(v, handle)] for k, v in value.items()]]
    if isinstance(value, (bytes, bytearray)):
        return ["b" if isinstance(value, bytes) else "B", bytes(value).hex()]
    if isinstance(value, complex):
        return ["c", value.real, value.imag]
    if isinstance(value, range):
        return ["r", value.start, value.stop, value.step]
    builtin = str(getattr(value, "__name__", ""))
    if getattr(builtins, builtin, None) is value:
        return ["n", builtin]  # int, len, ...: the other side's own
    if handle is None:
        raise TypeError(f"a {kind.__name__} cannot be passed to the program (plain data and its objects only)")
    return ["h", handle(value)]


_COLLECTIONS = {"collections.Counter": "C", "collections.OrderedDict": "O", "collections.deque": "q",
                "collections.defaultdict": "d"}


def decode(value: Any, proxy: Callable[[int], Any], any_builtin: bool = False) -> Any:
    """The inverse of `encode`: handles become `proxy(id)`; anything malformed raises ValueError.

    A builtin comes back by name: any one for the program (`sorted(xs, key=len)`), only a type for the judge.
    """
    if value is None or type(value) in (bool, int, float, str):
        return value
    if not isinstance(value, list) or not value or not isinstance(value[0], str):
        raise ValueError(f"malformed value from the program: {str(value)[:80]}")
    tag, rest = value[0], value[1:]
    if tag == "h" and type(rest[0]) is int:
        return proxy(rest[0])
    if tag == "n":
        found = getattr(builtins, str(rest[0]))
        if not (any_builtin or isinstance(found, type)):
            raise ValueError(f"the program sent the builtin {rest[0]!r}")
        return found
    if tag in ("b", "B"):
        return (bytes if tag == "b" else bytearray).fromhex(rest[0])
    if tag == "c":
        return complex(float(rest[0]), float(rest[1]))
    if tag == "r":
        return range(int(rest[0]), int(rest[1]), int(rest[2]))
    if tag in ("d", "C", "O"):
        import collections

        kind = {"d": dict, "C": collections.Counter, "O": collections.OrderedDict}[tag]
        return kind(dict((decode(k, proxy, any_builtin), decode(v, proxy, any_builtin)) for k, v in rest[0]))
    if tag not in ("t", "l", "s", "f", "q"):
        raise ValueError(f"unknown value tag {tag!r} from the program")
    items = [decode(x, proxy, any_builtin) for x in rest[0]]
    if tag == "q":
        import collections

        return collections.deque(items)
    return {"t": tuple, "l": list, "s": set, "f": frozenset}[tag](items)


def describe(stage: str, source: str, exc: BaseException, show: bool = True) -> str:
    detail = type(exc).__name__
    try:  # either can fail after a MemoryError, or with stderr closed or at the file-size limit
        import traceback

        detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
        if show:
            traceback.print_exc()
    except Exception:
        pass
    where = f"{stage} failed: {source.strip()[:200]}" if stage.startswith("test") else f"{stage} raised"
    return " ".join(f"{where}: {detail}".split())


# --- the program process ---------------------------------------------------------------------------------------


def program(request_fd: int, reply_fd: int) -> int:
    """Run the program sent by the judge, send its names, then answer calls until the judge closes the pipe."""
    import json  # noqa: F401  (imported before the program runs, so its monkeypatches cannot hide the module)

    job = receive(request_fd)
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)  # a 10,000-digit answer is an answer
    if job["blocked_events"]:
        _install_guard(frozenset(job["blocked_events"]))
    namespace: dict[str, Any] = {"__name__": "__sandbox__", "__builtins__": builtins}
    me = os.getpid()
    try:
        exec(compile(job["program"], "<program>", "exec", dont_inherit=True), namespace)
    except BaseException as exc:  # the program's failure, SystemExit and KeyboardInterrupt included
        error = describe("program", job["program"], exc)
        _flush()
        if os.getpid() == me:
            send(reply_fd, {"error": error})
        os._exit(1)
    if os.getpid() != me:  # a process the program forked got here: only the runner answers
        os._exit(1)
    objects: list[Any] = []

    def handle(value: Any) -> int:
        objects.append(value)
        return len(objects) - 1

    _flush()
    _reply(reply_fd, {"names": _names(namespace, handle)})
    while True:
        try:
            call = receive(request_fd)
        except EOFError:
            os._exit(0)
        answer = _answer(call, objects, handle)
        _flush()  # the judge may end this process as soon as it has the last answer
        _reply(reply_fd, answer)


def _reply(fd: int, message: dict[str, Any]) -> None:
    try:
        send(fd, message)
    except (ValueError, TypeError, RecursionError, MemoryError) as exc:  # nothing written yet: say why instead
        send(fd, {"raise": type(exc).__name__, "message": f"the answer could not be sent: {str(exc)[:500]}"})


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BaseException:
            pass


def _names(namespace: dict[str, Any], handle: Callable[[Any], int]) -> dict[str, Any]:
    names: dict[str, Any] = {}
    for name, value in list(namespace.items()):
        if name.startswith("__") and name.endswith("__"):
            continue
        if type(value).__name__ == "module":
            names[name] = ["m", getattr(value, "__name__", name)]
        elif not _small(value):  # a 100 MB global stays here; the judge gets a handle to it
            names[name] = ["h", handle(value)]
        else:
            try:
                names[name] = encode(value, handle)
            except Exception:
                continue
    return names


def _small(value: Any, budget: int = 100_000) -> bool:
    """At most `budget` elements and characters all told (a walk that stops once over it)."""
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        try:
            if isinstance(item, (str, bytes, bytearray)):
                budget -= len(item)
            elif isinstance(item, dict):
                budget -= len(item)
                stack.extend(item.keys())
                stack.extend(item.values())
            elif isinstance(item, (list, tuple, set, frozenset)):
                budget -= len(item)
                stack.extend(item)
            else:
                budget -= 1
        except Exception:
            return False
        if budget < 0:
            return False
    return True


def _answer(call: Any, objects: list[Any], handle: Callable[[Any], int]) -> dict[str, Any]:
    try:
        op, obj, args = call[0], objects[call[1]], call[2:]
        unwrap = lambda v: decode(v, objects.__getitem__, any_builtin=True)  # noqa: E731
        result: Any = None
        if op == "call":
            result = obj(*unwrap(args[0]), **unwrap(args[1]))
        elif op == "getattr":
            result = getattr(obj, args[0])
        elif op == "setattr":
            setattr(obj, args[0], unwrap(args[1]))
        elif op == "getitem":
            result = obj[unwrap(args[0])]
        elif op == "setitem":
            obj[unwrap(args[0])] = unwrap(args[1])
        elif op in _UNARY:
            result = _UNARY[op](obj)
        else:
            raise ValueError(f"unknown operation {op!r}")
        return {"value": encode(result, handle)}
    except BaseException as exc:
        return {"raise": type(exc).__name__, "message": str(exc)[:2000]}


_UNARY: dict[str, Callable[[Any], Any]] = {"len": len, "bool": bool, "str": str, "iter": iter, "next": next}


def _install_guard(blocked: frozenset[str]) -> None:
    def guard(event: str, args: tuple[Any, ...]) -> None:
        if event in blocked:
            raise PermissionError(f"sandbox: '{event}' is not allowed here")

    sys.addaudithook(guard)


# --- the judge: runs setup and tests against the program's names -----------------------------------------------


class ProgramGone(Exception):
    """The program process ended (exited, crashed, was killed) before the tests finished."""


class ProgramError(Exception):
    """An exception of the program's own kind (not a builtin one) raised in the program process."""


class JudgeOverLimit(BaseException):
    """The judge went over its own memory limit on what the program sent (a 64 MiB message of `[],` is ~1.5 GiB of
    lists). A BaseException, so neither a test's `except Exception` nor the judge's skipping of odd names hides it."""

    def __init__(self, memory_mb: int) -> None:
        super().__init__(f"the judge went over its memory limit (memory_mb={memory_mb} MiB) on what the program sent")


class Judge:
    """The judge's end of the pipes to the program process."""

    def __init__(self, request_fd: int, reply_fd: int, alive: Alive, memory_mb: int) -> None:
        self.request_fd, self.reply_fd, self.alive, self.memory_mb = request_fd, reply_fd, alive, memory_mb

    def call(self, *message: Any) -> Any:
        try:
            send(self.request_fd, list(message))
            reply = receive(self.reply_fd, self.alive)
            if "raise" not in reply:
                return decode(reply["value"], self.proxy)
        except (EOFError, OSError) as exc:
            raise ProgramGone(str(exc)) from None
        except ValueError as exc:
            raise ProgramError(f"the program sent malformed data: {exc}") from None
        except MemoryError:
            raise JudgeOverLimit(self.memory_mb) from None
        kind = getattr(builtins, str(reply["raise"]), None)
        if not (isinstance(kind, type) and issubclass(kind, Exception)):
            raise ProgramError(f"{reply['raise']}: {reply['message']}")
        raise kind(reply["message"])

    def proxy(self, ident: int) -> ProgramObject:
        return ProgramObject(self, ident)

    def encode(self, value: Any) -> Any:
        def handle(obj: Any) -> int:
            if type(obj) is ProgramObject and object.__getattribute__(obj, "_judge") is self:
                return int(object.__getattribute__(obj, "_id"))
            raise TypeError(f"a {type(obj).__name__} cannot be passed to the program (plain data and its objects)")

        return encode(value, handle)


def _remote(op: str) -> Callable[..., Any]:
    def method(self: ProgramObject, *args: Any) -> Any:
        judge = object.__getattribute__(self, "_judge")
        return judge.call(op, object.__getattribute__(self, "_id"), *[judge.encode(a) for a in args])

    return method


class ProgramObject:
    """An object that lives in the program process. No `==`, `<`, `in` or `hash` goes there: comparisons stay here."""

    __slots__ = ("_judge", "_id")

    def __init__(self, judge: Judge, ident: int) -> None:
        object.__setattr__(self, "_judge", judge)
        object.__setattr__(self, "_id", ident)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        judge = object.__getattribute__(self, "_judge")
        return judge.call("call", object.__getattribute__(self, "_id"), judge.encode(args), judge.encode(kwargs))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return _remote("getattr")(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        _remote("setattr")(self, name, value)

    def __repr__(self) -> str:
        return f"<program object {object.__getattribute__(self, '_id')}>"

    def __bool__(self) -> bool:
        return bool(_checked(_remote("bool")(self), bool))

    def __len__(self) -> int:
        return int(_checked(_remote("len")(self), int))

    def __str__(self) -> str:
        return str(_checked(_remote("str")(self), str))

    __getitem__ = _remote("getitem")
    __setitem__ = _remote("setitem")
    __iter__ = _remote("iter")
    __next__ = _remote("next")


def _checked(value: Any, kind: type) -> Any:
    if type(value) is not kind:
        raise TypeError(f"the program returned a {type(value).__name__} where a {kind.__name__} was needed")
    return value


def judge_tests(job: dict[str, Any], request_fd: int, reply_fd: int, alive: Alive) -> dict[str, Any]:
    """Send the program, then run the setup and each test here; the verdict as `{passed, error, ended}`."""
    try:
        return _judge_tests(job, request_fd, reply_fd, alive)
    except ProgramGone:
        return {"passed": False, "error": "", "ended": True}
    except (Exception, JudgeOverLimit) as exc:  # whatever the program sends, the judge answers with a verdict
        if isinstance(exc, MemoryError):
            exc = JudgeOverLimit(job["memory_mb"])
        return {"passed": False, "error": describe("judge", "", exc, show=False), "ended": False}


def _judge_tests(job: dict[str, Any], request_fd: int, reply_fd: int, alive: Alive) -> dict[str, Any]:
    judge = Judge(request_fd, reply_fd, alive, job["memory_mb"])
    try:
        send(request_fd, {"program": job["program"], "blocked_events": job["blocked_events"]})
        ready = receive(reply_fd, alive)
    except (EOFError, OSError):
        raise ProgramGone("the program process ended") from None
    if "error" in ready:
        return {"passed": False, "error": str(ready["error"]), "ended": False}
    namespace: dict[str, Any] = {"__name__": "__sandbox__", "__builtins__": builtins}
    # the program's side may have rewritten its own runner: take only plain names (never `__builtins__`) and
    # standard modules, which the judge imports itself
    stdlib = set(getattr(sys, "stdlib_module_names", ()))
    names = {n: v for n, v in dict(ready["names"]).items()
             if isinstance(n, str) and n.isidentifier() and not n.startswith("__")}
    modules = {n for n, v in names.items() if isinstance(v, list) and v[:1] == ["m"]}
    for name in [n for n in modules if str(names[n][1]).partition(".")[0] not in stdlib]:
        del names[name]
        modules.discard(name)
    for name in _visible(names, modules, [job["setup"], *job["tests"]]):
        try:
            namespace[name] = _import(names[name][1]) if name in modules else decode(names[name], judge.proxy)
        except MemoryError:
            raise JudgeOverLimit(job["memory_mb"]) from None
        except Exception:
            continue
    stages = [("setup", job["setup"]), *((f"test {i}", t) for i, t in enumerate(job["tests"], 1))]
    for stage, source in stages:
        try:
            exec(compile(source, f"<{stage}>", "exec", dont_inherit=True), namespace)
        except ProgramGone:
            return {"passed": False, "error": "", "ended": True}
        except BaseException as exc:
            over = f" (memory_mb={job['memory_mb']} MiB)" if isinstance(exc, MemoryError) else ""
            return {"passed": False, "error": describe(stage, source, exc) + over, "ended": False}
    return {"passed": True, "error": "", "ended": False}


def _visible(names: dict[str, Any], modules: set[str], sources: list[str]) -> set[str]:
    """The program's names the tests see. A name that shadows a builtin (`set`) or a standard module (`math` bound
    to something else) is a way to forge the expected side of `assert set(f(x)) == set([1, 2])`: it is visible only
    when it is the function under test itself (MBPP task 126 defines `sum`), that is, called innermost on the left
    of a test's comparison while no other program function is.
    """
    stdlib = set(getattr(sys, "stdlib_module_names", ()))
    shadows = {n for n in names if hasattr(builtins, n) or (n in stdlib and n not in modules)}
    if not shadows:
        return set(names)
    import ast

    under_test: set[str] = set()
    for source in sources:
        try:
            tree = ast.parse(source)
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Assert):
                side = node.test.left if isinstance(node.test, ast.Compare) else node.test
                under_test |= {c.func.id for c in _program_calls(side, names) if not _program_calls(c, names, True)}
    if under_test - shadows:
        return set(names) - shadows
    return (set(names) - shadows) | (under_test & shadows)


def _program_calls(node: Any, names: dict[str, Any], inside: bool = False) -> list[Any]:
    """Calls of the program's names in `node` (only in its arguments when `inside`)."""
    import ast

    roots = [*node.args, *(k.value for k in node.keywords)] if inside else [node]
    return [c for root in roots for c in ast.walk(root)
            if isinstance(c, ast.Call) and isinstance(c.func, ast.Name) and c.func.id in names]


def _import(name: str) -> Any:
    import importlib

    return importlib.import_module(name)  # the judge's own copy: a module from the program would be its to forge


def judge() -> int:
    """The trainer's child: read the job, start the program (mode by mode), judge, report on the report fd."""
    import json

    job = receive(0)  # the first message: how to start the program; the tests stay in the pipe until it has started
    _set_limits(job["judge_limits"])  # before any fork: every process of the run inherits them
    if hasattr(sys, "set_int_max_str_digits"):
        sys.set_int_max_str_digits(0)
    requests, replies = os.pipe(), os.pipe()
    starter = _start_in_namespaces if job["mode"] == "namespaces" else _start_plain
    pid = starter(job, requests[0], replies[1])
    os.close(requests[0])
    os.close(replies[1])
    job.update(receive(0))  # setup and tests: never in the memory of a process the program's side came from
    _stdin_null()
    if job["mode"] == "unsafe_user":  # the judge leaves the program's uid and root behind before running any test code
        os.setgroups([])
        os.setgid(job["judge_user"][1])
        os.setuid(job["judge_user"][0])
    status: list[int] = []

    def alive() -> bool:
        if not status:
            done, code = os.waitpid(pid, os.WNOHANG)
            if done:
                status.append(code)
        return not status

    verdict = judge_tests(job, requests[1], replies[0], alive)
    if verdict["ended"]:
        if not status:
            status.append(os.waitpid(pid, 0)[1])
        code = os.waitstatus_to_exitcode(status[0])
        verdict["exit"] = 128 - code if code < 0 else code  # killed by signal N: 128 + N, as a shell says
    elif not status and job["mode"] != "unsafe_user":  # unsafe_user: the trainer kills the program's uid
        os.kill(pid, 9)  # namespaces: pid 1 of the program's namespace, which takes every process with it
    report = json.dumps(verdict).encode()
    os.write(job["report_fd"], report)
    return 0


def _start_plain(job: dict[str, Any], request_fd: int, reply_fd: int) -> int:
    """unsafe_user and unsafe modes: the program as its own uid (unsafe_user) or the trainer's (unsafe), in a work
    directory."""
    pid = os.fork()
    if pid:
        return pid
    try:
        if job["mode"] == "unsafe_user":  # first: a change of uid clears the parent-death signal set below
            os.setgroups([])
            os.setgid(job["program_user"][1])
            os.setuid(job["program_user"][0])
        _prepare_program(job, request_fd, reply_fd)
        os.chdir(job["workdir"])
        _exec_program(job, request_fd, reply_fd, job["workdir"], job["workdir"])
    finally:
        os._exit(127)


def _prepare_program(job: dict[str, Any], request_fd: int, reply_fd: int) -> None:
    prctl = getattr(_libc(), "prctl", lambda *args: -1)  # Linux only; elsewhere (unsafe mode) go without
    prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
    _stdin_null()  # the judge's stdin still holds the tests
    _close_fds_but(0, 1, 2, request_fd, reply_fd)
    _set_limits(job["limits"])
    prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0)


def _set_limits(limits: dict[str, int]) -> None:
    """Soft and hard limits both (a program can't raise them again), never above a hard limit already set."""
    import resource

    for name, value in limits.items():
        if (which := getattr(resource, name, None)) is None:
            continue
        hard = resource.getrlimit(which)[1]
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))


def _exec_program(job: dict[str, Any], request_fd: int, reply_fd: int, home: str, tmp: str) -> None:
    os.set_inheritable(request_fd, True)
    os.set_inheritable(reply_fd, True)
    env = {"PATH": "/usr/bin:/bin", "HOME": home, "TMPDIR": tmp, "LANG": "C.UTF-8"}
    source = job["source"]
    os.execve(job["python"], [job["python"], "-I", "-S", "-B", "-c", source, "program", str(request_fd),
                              str(reply_fd)], env)


def _stdin_null() -> None:
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)


def _close_fds_but(*keep: int) -> None:
    """Close every descriptor but `keep` (the report pipe and the judge's ends of the program's pipes)."""
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:  # no /proc (macOS): the usual range
        fds = list(range(3, 1024))
    for fd in fds:
        if fd not in keep:
            try:
                os.close(fd)
            except OSError:
                pass


def _libc() -> Any:
    import ctypes

    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        import ctypes

        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


# --- namespaces mode -------------------------------------------------------------------------------------------


def _start_in_namespaces(job: dict[str, Any], request_fd: int, reply_fd: int) -> int:
    """New user, pid, network, IPC and UTS namespaces; the init child builds the mount namespace."""
    libc = _libc()
    uid, gid = os.getuid(), os.getgid()
    _check(libc.unshare(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS), "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{INNER_ID} {uid} 1"), ("gid_map", f"{INNER_ID} {gid} 1")):
        with open(f"/proc/self/{name}", "w") as f:
            f.write(text)
    pid = os.fork()
    if pid:
        return pid
    try:  # pid 1 of the new pid namespace
        _prepare_init(job, request_fd, reply_fd)
        child = os.fork()
        if child == 0:
            try:
                _prepare_program(job, request_fd, reply_fd)
                os.chdir(SANDBOX_HOME)
                _exec_program(job, request_fd, reply_fd, SANDBOX_HOME, "/tmp")
            finally:
                os._exit(127)
        os.close(request_fd)
        os.close(reply_fd)
        os._exit(_reap(child))
    except BaseException as exc:
        print(f"sandbox init failed: {exc!r}", file=sys.stderr, flush=True)
    os._exit(125)


def _reap(child: int) -> int:
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            return 125
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code  # exiting takes every process of the namespace with it


def _prepare_init(job: dict[str, Any], request_fd: int, reply_fd: int) -> None:
    import signal

    libc = _libc()
    libc.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # pid 1 ignores signals without a handler: the program can't stop it
    _stdin_null()  # the judge's stdin still holds the tests
    _close_fds_but(0, 1, 2, request_fd, reply_fd)
    _check(libc.unshare(CLONE_NEWNS), "unshare(mount)")
    _mount(libc, None, "/", None, MS_REC | MS_PRIVATE)
    root = "/tmp"  # the new root is mounted over the old /tmp, then pivoted into
    inodes = max(1024, job["disk_mb"] * 256)
    _mount(libc, "tmpfs", root, "tmpfs", MS_NOSUID | MS_NODEV, f"size={job['disk_mb']}m,nr_inodes={inodes},mode=755")
    for path in _system_paths(job["python"]):
        if os.path.islink(path):
            os.makedirs(os.path.dirname(root + path), exist_ok=True)
            os.symlink(os.readlink(path), root + path)
        elif os.path.isdir(path):
            os.makedirs(root + path, exist_ok=True)
            _bind(libc, path, root + path, read_only=True)
    os.makedirs(root + "/dev", exist_ok=True)
    for name in DEVICES:
        if os.path.exists(f"/dev/{name}"):
            open(f"{root}/dev/{name}", "w").close()
            _bind(libc, f"/dev/{name}", f"{root}/dev/{name}", read_only=False)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1"),
                         ("stderr", "/proc/self/fd/2")):
        os.symlink(target, f"{root}/dev/{name}")
    for path, mode in (("/tmp", 0o1777), ("/var/tmp", 0o1777), ("/dev/shm", 0o1777), (SANDBOX_HOME, 0o755),
                       ("/etc", 0o755), ("/proc", 0o555)):
        os.makedirs(root + path, exist_ok=True)
        os.chmod(root + path, mode)
    with open(root + "/etc/passwd", "w") as f:
        f.write(f"sandbox:x:{INNER_ID}:{INNER_ID}::{SANDBOX_HOME}:/bin/sh\n")
    with open(root + "/etc/group", "w") as f:
        f.write(f"sandbox:x:{INNER_ID}:\n")
    _mount(libc, "proc", root + "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    for name in NAMESPACE_LIMITS:  # a nested user namespace could mount a tmpfs of its own, outside `disk_mb`
        with open(f"{root}/proc/sys/user/{name}", "w") as f:  # this namespace's own counts (init holds its caps)
            f.write("0")
    os.chdir(root)
    _check(libc.syscall(SYS_PIVOT_ROOT[os.uname().machine], b".", b"."), "pivot_root")
    _check(libc.umount2(b".", MNT_DETACH), "umount old root")
    os.chdir("/")


def _system_paths(python: str) -> list[str]:
    """The system directories, plus the interpreter's own prefix when it lives elsewhere (a pyenv, a conda)."""
    paths = [p for p in SYSTEM_DIRS if os.path.lexists(p)]
    for extra in (sys.base_prefix, sys.base_exec_prefix, os.path.dirname(os.path.realpath(python))):
        real = os.path.realpath(extra)
        if not any(real == p or real.startswith(p + "/") for p in paths):
            paths.append(real)
    return paths


def _mount(libc: Any, source: str | None, target: str, kind: str | None, flags: int, data: str | None = None) -> None:
    as_bytes = lambda v: v.encode() if isinstance(v, str) else v  # noqa: E731
    _check(libc.mount(as_bytes(source), as_bytes(target), as_bytes(kind), flags, as_bytes(data)), f"mount {target}")


def _bind(libc: Any, source: str, target: str, read_only: bool) -> None:
    _mount(libc, source, target, None, MS_BIND | MS_REC)
    kept = 0
    flags = os.statvfs(source).f_flag
    for st, ms in ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC)):
        kept |= ms if flags & st else 0
    _mount(libc, None, target, None, MS_BIND | MS_REMOUNT | MS_NOSUID | kept | (MS_RDONLY if read_only else 0))


if __name__ == "__main__" and sys.argv[1:2] == ["judge"]:
    sys.exit(judge())
if __name__ == "__main__" and sys.argv[1:2] == ["program"]:
    sys.exit(program(int(sys.argv[2]), int(sys.argv[3])))
