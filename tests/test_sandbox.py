"""The code sandbox (lit_ft.generation.sandbox) and pass@1 (lit_ft.generation.code_eval): real processes, real
limits, real attacks.

Each attack of the adversarial review (issue 8) is reproduced here and must end contained with a correct verdict.
The `layer` fixture runs a test in `namespaces` mode and in `unsafe_user` mode (root, opted in); each skips, with the
reason, where this machine cannot run it. What `unsafe_user` does not hold is asserted as refused without the opt-in.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
import torch
from builders import shared_data
from torchmetrics.utilities.data import dim_zero_sum

from lit_ft.errors import UserError
from lit_ft.generation import sandbox
from lit_ft.generation.code_eval import PassAtOne, run_all
from lit_ft.generation.decoding import extract_code
from lit_ft.generation.sandbox import SandboxResult, run_tests

pytestmark = pytest.mark.skipif(not os.sys.platform.startswith("linux"), reason="the sandbox needs Linux")

ADD_ONE = "def add_one(x):\n    return x + 1\n"
WRONG_ADD_ONE = "def add_one(x):\n    return x\n"
ADD_ONE_TESTS = ["assert add_one(1) == 2", "assert add_one(-1) == 0"]
SIMILAR = "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b)))\n"
SIMILAR_TESTS = ["assert similar_elements((3, 4, 5, 6), (5, 7, 4, 10)) == (4, 5)",
                 "assert similar_elements((1, 2, 3, 4), (5, 4, 3, 7)) == (3, 4)"]
MARK = b"The sandbox's child side"  # in the command line of every judge and program process


def _available(mode: str) -> str | None:
    try:
        sandbox.sandbox_plan(mode, allow_unsafe=True)
    except UserError as exc:
        return str(exc)
    return None


@pytest.fixture(params=["namespaces", "unsafe_user"])
def layer(request: pytest.FixtureRequest) -> str:
    """A sandbox mode this machine runs: namespaces (user namespaces) and unsafe_user (the trainer is root)."""
    why = _available(request.param)
    if why:
        pytest.skip(f"mode {request.param} unavailable here: {why}")
    return str(request.param)


@pytest.fixture
def auto() -> None:
    """For tests that use the default mode: skip where `auto` refuses (no user namespaces)."""
    why = _available("auto")
    if why:
        pytest.skip(f"mode auto unavailable here: {why}")


def _sandbox_processes() -> list[int]:
    """Live processes of any sandbox (zombies, already dead, wait for the system's init to reap them)."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            live = (entry / "stat").read_text().rpartition(")")[2].split()[0] != "Z"
            if live and (MARK in (entry / "cmdline").read_bytes() or entry.stat().st_uid >= sandbox.USER_UID_BASE):
                found.append(int(entry.name))
        except (OSError, IndexError):
            continue
    return found


def test_correct_program_passes_and_wrong_one_fails(layer: str) -> None:
    assert run_tests(ADD_ONE, ADD_ONE_TESTS, mode=layer, allow_unsafe=True) == SandboxResult(True, "", False, "")
    wrong = run_tests(WRONG_ADD_ONE, ADD_ONE_TESTS, mode=layer, allow_unsafe=True)
    assert not wrong.passed and not wrong.timed_out
    assert wrong.error == "test 1 failed: assert add_one(1) == 2: AssertionError"
    assert "AssertionError" in wrong.output  # the traceback, captured
    missing = run_tests("def other(x):\n    return x\n", ADD_ONE_TESTS, mode=layer, allow_unsafe=True)
    assert missing.error == "test 1 failed: assert add_one(1) == 2: NameError: name 'add_one' is not defined"
    syntax = run_tests("def add_one(x:\n", ADD_ONE_TESTS, mode=layer, allow_unsafe=True)
    assert syntax.error.startswith("program raised: SyntaxError")


def test_values_objects_and_exceptions_cross_between_program_and_judge(auto: None) -> None:
    program = ("import collections, math\nclass Node:\n"
               "    def __init__(self, v):\n        self.v, self.left = v, None\n"
               "    def depth(self):\n        return 1 + (self.left.depth() if self.left else 0)\n"
               "def values():\n    return collections.Counter('aab'), (1, [2, {3}]), b'x', 2.5, None, 1 + 2j\n"
               "def evens(n):\n    return (i for i in range(0, n, 2))\n"
               "def fail():\n    raise ValueError('bad input')\n"
               "def factorial(n):\n    return math.prod(range(1, n + 1))\n"
               "if __name__ == '__main__':\n    input()\n")
    tests = ["counts, nested, raw, half, nothing, z = values()",
             "assert counts == {'a': 2, 'b': 1} and type(counts) is collections.Counter",
             "assert nested == (1, [2, {3}]) and raw == b'x' and half == 2.5 and nothing is None and z == 1 + 2j",
             "assert list(evens(7)) == [0, 2, 4, 6] and 4 in evens(7)",
             "assert root.depth() == 2 and root.left.v == 2 and math.isclose(half, 2.5)",
             "assert factorial(2000) == math.factorial(2000)",  # 5,736 digits: over Python's default str limit
             "try:\n    fail()\nexcept ValueError as exc:\n    assert str(exc) == 'bad input'\nelse:\n    assert False"]
    result = run_tests(program, tests, setup="root = Node(1)\nroot.left = Node(2)")
    assert result.passed, result.error


def test_early_exit_is_not_a_pass(layer: str) -> None:
    exits = ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "quit()", "import os\nos.kill(os.getpid(), 9)"]
    for program in exits:
        result = run_tests(program, ["assert False"], mode=layer, allow_unsafe=True)
        assert not result.passed, program
    early = run_tests("import os\nos._exit(0)", ["assert False"], mode=layer, allow_unsafe=True)
    assert early.error.startswith("exited with status 0")
    killed = run_tests("import os\nos.kill(os.getpid(), 9)", [], mode=layer, allow_unsafe=True)
    assert killed.error.startswith("killed by SIGKILL")


def test_mbpp_reference_solutions_pass_and_broken_ones_fail(auto: None) -> None:
    rows = {}
    with open(shared_data("mbpp") / "mbpp.jsonl") as f:
        for line in f:
            row = json.loads(line)
            rows[row["task_id"]] = row
    picked = [rows[i] for i in (2, 3, 4, 367)]  # 367 has test_setup_code that uses the program's class
    assert picked[-1]["test_setup_code"].strip()
    broken = rows[3]["code"].replace("result = True", "result = False")
    metric = PassAtOne()
    metric.update([r["code"] for r in picked] + [broken], [r["test_list"] for r in picked] + [rows[3]["test_list"]],
                  [r["test_setup_code"] for r in picked] + [""])
    assert [r.passed for r in metric.last_results] == [True, True, True, True, False], metric.last_results
    assert metric.compute().item() == pytest.approx(4 / 5)


def test_infinite_loop_times_out(auto: None) -> None:
    start = time.monotonic()
    result = run_tests("while True:\n    pass\n", ["assert True"], timeout=1.0)
    assert result.timed_out and not result.passed
    assert "timed out after 1 s" in result.error
    assert time.monotonic() - start < 5


def test_fork_bomb_fails_quickly_and_leaves_nothing_behind(layer: str) -> None:
    start = time.monotonic()
    result = run_tests("import os\nwhile True:\n    os.fork()\n", ["assert True"], timeout=5.0, mode=layer,
                       allow_unsafe=True)
    assert not result.passed
    assert time.monotonic() - start < 4, result  # the process limit stops it, not the timeout
    stubborn = "import os\nos.setsid()\nwhile True:\n    try:\n        os.fork()\n    except Exception:\n        pass\n"
    result = run_tests(stubborn, ["assert True"], timeout=1.5, mode=layer, allow_unsafe=True)
    assert result.timed_out and not result.passed
    time.sleep(0.2)
    assert not _sandbox_processes()
    assert run_tests(ADD_ONE, ADD_ONE_TESTS, mode=layer, allow_unsafe=True).passed  # and sandboxes still run


def test_huge_allocation_fails_with_memory_error(auto: None) -> None:
    result = run_tests("x = bytearray(10**11)\n", ["assert True"])
    assert not result.passed and not result.timed_out
    assert result.error == "program raised: MemoryError"
    assert run_tests("x = bytearray(10**8)\n", ["assert len(x) == 10**8"], memory_mb=512).passed


def test_network_is_unreachable(layer: str) -> None:
    outside = run_tests("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)\n", [], mode=layer,
                        allow_unsafe=True)
    assert not outside.passed and not outside.timed_out
    expected = "Network is unreachable" if layer == "namespaces" else "'socket.__new__' is not allowed"
    assert expected in outside.error
    with socket.socket() as server:  # a service on the host's loopback (a database, the trainer's own ports)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        host_loopback = run_tests(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n", [],
                                  mode=layer, allow_unsafe=True)
    assert not host_loopback.passed, host_loopback


SPAWN = (  # an exec that raises no audit event, so the interpreter it starts has no hook
    "import _posixsubprocess, os, sys\n"
    "def spawn(code):\n"
    "    read, write = os.pipe()\n"
    "    args = [[sys.executable, '-c', code], [sys.executable.encode()], True, (), None, None, -1, -1, -1, -1, -1,"
    " -1, read, write, False, False, -1, None, None, None, -1, None]\n"
    "    try:\n        pid = _posixsubprocess.fork_exec(*args, False)\n"
    "    except TypeError:  # no allow_vfork argument (Python 3.13)\n"
    "        pid = _posixsubprocess.fork_exec(*args)\n"
    "    os.waitpid(pid, 0)\n"
)


def test_an_exec_past_the_audit_hook_is_contained_in_every_mode_run_without_opt_in() -> None:
    """Attack: in `user` mode `_posixsubprocess.fork_exec` started an unhooked interpreter that reached the host's
    loopback and planted a file in a world-writable directory that a later candidate read."""
    if _available("namespaces"):
        pytest.skip(f"mode namespaces unavailable here: {_available('namespaces')}")
    shared = tempfile.mkdtemp(prefix="lit_ft_shared_", dir="/tmp")  # world-writable, like /tmp/.X11-unix
    os.chmod(shared, 0o1777)
    planted = f"lit_ft_planted_{os.getpid()}"
    try:
        with socket.socket() as server:
            server.bind(("127.0.0.1", 0))
            server.listen()
            server.setblocking(False)
            child = (f"import socket\nfor d in ({shared!r}, '/tmp'):\n    try:\n"
                     f"        open(d + '/{planted}', 'w').write('answer')\n    except OSError:\n        pass\n"
                     f"socket.create_connection(('127.0.0.1', {server.getsockname()[1]}), timeout=2)\n")
            attack = SPAWN + f"spawn({child!r})\nspawned = os.path.exists('/tmp/{planted}')\n"
            later = f"import os\nfound = os.path.exists('{shared}/{planted}')\n"
            ran = []
            for mode in ("auto", "namespaces", "user", "unsafe_user", "unsafe"):
                try:
                    metric = PassAtOne(mode=mode)
                except UserError:
                    continue
                ran.append(mode)
                metric.update([attack], [["assert spawned"]])  # it did run, inside its own /tmp
                metric.update([later], [["assert not found"]])
                assert metric.compute().item() == 1.0, (mode, metric.last_results)
                with pytest.raises(BlockingIOError):
                    server.accept()  # nobody connected
        assert ran == ["auto", "namespaces"]
        with pytest.raises(UserError, match=r"set model\.task_options\.allow_unsafe_sandbox true to run it anyway"):
            PassAtOne(mode="unsafe_user")
    finally:
        sandbox.remove_tree(shared)
        sandbox.remove_tree(f"/tmp/{planted}")


def test_the_judge_and_what_it_starts_run_under_the_memory_limit(layer: str) -> None:
    """Attack: a 256 MiB program wrote 60 MiB of `[],` on its reply pipe, which the judge decoded into 1.5 GiB of
    lists; a setup's allocation in the judge, or a process it started, had no limit either."""
    flood = ("import os, sys\nbody = b'{\"names\": {\"x\": [' + b'[],' * (16 * 2**20) + b'[]]}}'\n"
             "os.write(int(sys.argv[3]), len(body).to_bytes(8, 'big') + body)\n")  # argv[3]: the reply pipe
    result = run_tests(flood, ["assert True"], memory_mb=192, mode=layer, allow_unsafe=True)
    assert not result.passed and not result.timed_out
    assert result.error == ("judge raised: JudgeOverLimit: the judge went over its memory limit (memory_mb=192 MiB) "
                            "on what the program sent"), result
    hog = run_tests(ADD_ONE, ADD_ONE_TESTS, setup="hog = bytearray(2**30)", memory_mb=192, mode=layer,
                    allow_unsafe=True)
    assert hog.error == "setup raised: MemoryError (memory_mb=192 MiB)", hog
    spawned = ("import subprocess, sys\n"
               "child = subprocess.run([sys.executable, '-c', 'bytearray(2**30)'], capture_output=True)")
    child = run_tests(ADD_ONE, ["assert b'MemoryError' in child.stderr, child"], setup=spawned, memory_mb=192,
                      mode=layer, allow_unsafe=True)
    assert child.passed, child


def test_unix_sockets_on_the_host_are_unreachable(layer: str, tmp_path: Path) -> None:
    """Attack: a Unix socket file on the shared file system accepted a connection. Abstract sockets too."""
    tmp_path.chmod(0o777)
    path = str(tmp_path / "service.sock")
    abstract = f"\0lit_ft_test_{os.getpid()}"
    with socket.socket(socket.AF_UNIX) as file_server, socket.socket(socket.AF_UNIX) as abstract_server:
        file_server.bind(path)
        os.chmod(path, 0o777)
        abstract_server.bind(abstract)
        for server in (file_server, abstract_server):
            server.listen()
            server.setblocking(False)
        program = ("import socket\nreached = []\n"
                   f"for address in ({path!r}, {abstract!r}):\n"
                   "    try:\n        socket.socket(socket.AF_UNIX).connect(address)\n"
                   "        reached.append(address)\n    except OSError as exc:\n        print(address, exc)\n")
        result = run_tests(program, ["assert reached == []"], mode=layer, allow_unsafe=True)
        for server in (file_server, abstract_server):
            with pytest.raises(BlockingIOError):
                server.accept()  # nobody connected
    assert result.passed, (result.error, result.output)


def test_concurrent_programs_cannot_touch_each_other(layer: str) -> None:
    """Attack: one program rewrote the payloads of programs running next to it (29 of 30 wrong ones then passed)."""
    attacker = (
        "import os, time\nhits = []\nfix = '\\ndef add_one(x):\\n    return x + 1\\n'\n"
        "for _ in range(20):\n"
        "    for pid in [p for p in os.listdir('/proc') if p.isdigit() and int(p) != os.getpid()]:\n"
        "        for name in ('mem', 'fd/0', 'cwd/payload.marshal'):\n"
        "            try:\n                os.close(os.open(f'/proc/{pid}/{name}', os.O_RDWR))\n"
        "                hits.append(f'{pid}/{name}')\n            except OSError:\n                pass\n"
        "    for base in ('/tmp', '/var/tmp', '/dev/shm', os.path.dirname(os.getcwd())):\n"
        "        for entry in os.listdir(base) if os.path.isdir(base) else []:\n"
        "            if entry.startswith('lit_ft_sandbox') and os.path.join(base, entry) != os.getcwd():\n"
        "                for root, _, files in os.walk(os.path.join(base, entry)):\n"
        "                    for f in files:\n"
        "                        try:\n                            open(os.path.join(root, f), 'a').write(fix)\n"
        "                            hits.append(os.path.join(root, f))\n"
        "                        except OSError:\n                            pass\n"
        "    time.sleep(0.05)\n"
        "print('hits', hits)\n"
    )
    victim = "import time\ntime.sleep(0.3)\n" + WRONG_ADD_ONE
    results = run_all([attacker, victim, victim, victim], [["assert hits == []"]] + [ADD_ONE_TESTS] * 3,
                      mode=layer, workers=4, allow_unsafe=True)
    assert results[0].passed, (results[0].error, results[0].output)
    assert [r.passed for r in results[1:]] == [False, False, False]
    assert all(r.error.startswith("test 1 failed") for r in results[1:])


def test_deep_trees_and_locked_directories_never_raise_in_the_trainer(layer: str) -> None:
    """Attack: a 1,500-deep directory tree made RecursionError escape PassAtOne.update."""
    depth = 1500 if layer == "namespaces" else 300  # unsafe_user: on the host disk, ~3 ms per rmdir here (the
    # 1,500-deep case of remove_tree is test_remove_tree_is_iterative_and_total)
    program = ("import os\nstart = os.getcwd()\nprint(start, flush=True)\nshared = f'/tmp/lit_ft_deep_{os.getpid()}'\n"
               "os.mkdir(shared)\nfor base in (start, shared):\n    os.chdir(base)\n"
               f"    for _ in range({depth}):\n        os.mkdir('d')\n        os.chdir('d')\n"
               "    os.mkdir('locked')\n    open('locked/f', 'w').close()\n    os.chmod('locked', 0)\n"
               "os.chdir(start)\nos.chmod('d', 0o500)\n")
    metric = PassAtOne(timeout=20.0, mode=layer, allow_unsafe=True)
    metric.update([ADD_ONE + program, WRONG_ADD_ONE + program], [ADD_ONE_TESTS, ADD_ONE_TESTS])
    assert [r.passed for r in metric.last_results] == [True, False], metric.last_results
    workdir = metric.last_results[0].output.split()[0]
    assert workdir == "/sandbox" if layer == "namespaces" else not Path(workdir).exists()
    assert not list(Path("/tmp").glob("lit_ft_deep_*"))  # unsafe_user: the program's files in /tmp went too


def test_remove_tree_is_iterative_and_total(tmp_path: Path) -> None:
    top = Path(tempfile.mkdtemp(dir="/dev/shm" if os.access("/dev/shm", os.W_OK) else tmp_path))  # tmpfs: fast
    fd = os.open(top, os.O_RDONLY)
    for i in range(1500):  # deeper than the recursion limit, and a path far over PATH_MAX
        os.mkdir("d" * 50, dir_fd=fd)
        child = os.open("d" * 50, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = child
        if i % 400 == 0:
            os.close(os.open("f", os.O_CREAT | os.O_WRONLY, 0o000, dir_fd=fd))
            os.mkdir("locked", mode=0, dir_fd=fd)
    os.close(fd)
    sandbox.remove_tree(top)
    assert not top.exists()
    sandbox.remove_tree(top)  # gone already: still no exception


def test_nothing_outlives_the_run_and_disk_is_capped(tmp_path: Path) -> None:
    """Attack: files in /dev/shm, /tmp, /var/tmp and SysV shared memory outlived the run; 2 GiB went to the work dir."""
    if _available("namespaces"):
        pytest.skip(f"mode namespaces unavailable here: {_available('namespaces')}")
    name, key = f"lit_ft_left_{os.getpid()}", 0x5A000000 + os.getpid() % 0xFFFFFF
    program = (
        "import ctypes, os\n"
        f"for d in ('/tmp', '/var/tmp', '/dev/shm'):\n    open(os.path.join(d, {name!r}), 'w').write('x')\n"
        f"libc = ctypes.CDLL(None, use_errno=True)\nshm = libc.shmget({key}, 1 << 20, 0o1666)\n"
        "written = 0\n"
        "for target in ('big1', '/tmp/big2', '/dev/shm/big3'):\n"
        "    try:\n        with open(target, 'wb') as f:\n"
        "            for _ in range(64):\n                f.write(b'0' * 2**20)\n                written += 2**20\n"
        "    except OSError as exc:\n        print(target, exc)\n"
    )
    start = time.monotonic()
    result = run_tests(program, ["assert shm >= 0", "assert 8 * 2**20 < written <= 16 * 2**20, written"], disk_mb=16)
    assert result.passed, (result.error, result.output)
    assert "No space left on device" in result.output
    assert time.monotonic() - start < 10
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        assert not (Path(d) / name).exists()
    assert key not in _shm_keys()


def test_disk_cap_holds_in_a_nested_user_namespace() -> None:
    """Attack: a program made a user namespace of its own and mounted a tmpfs there: 36 MiB written with disk_mb=16."""
    if _available("namespaces"):
        pytest.skip(f"mode namespaces unavailable here: {_available('namespaces')}")
    program = (
        "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\nuid, gid = os.getuid(), os.getgid()\n"
        "for flags in (0x10000000 | 0x00020000, 0x00020000):  # a user and mount namespace; a mount one alone\n"
        "    if libc.unshare(flags) == 0:\n"
        "        for name, text in (('setgroups', 'deny'), ('uid_map', f'0 {uid} 1'), ('gid_map', f'0 {gid} 1')):\n"
        "            try:\n                open(f'/proc/self/{name}', 'w').write(text)\n"
        "            except OSError:\n                pass\n"
        "        print('mount', libc.mount(b'tmpfs', b'/tmp', b'tmpfs', 0, b'size=1g'))\n"
        "        break\n"
        "    print(flags, os.strerror(ctypes.get_errno()))\n"
        "written = 0\nfor i in range(3):\n"
        "    try:\n        with open(f'/tmp/big{i}', 'wb') as f:\n"
        "            for _ in range(12):\n                f.write(b'0' * 2**20)\n                written += 2**20\n"
        "    except OSError as exc:\n        print(exc)\n"
    )
    result = run_tests(program, ["assert written <= 16 * 2**20, written"], mode="namespaces", disk_mb=16)
    assert result.passed, (result.error, result.output)
    assert "No space left on device" in result.output


def test_unsafe_user_mode_removes_the_programs_files_and_processes() -> None:
    if _available("unsafe_user"):
        pytest.skip(f"mode unsafe_user unavailable here: {_available('unsafe_user')}")
    name = f"lit_ft_left_{os.getpid()}"
    program = ("import os, time\n"
               f"for d in ('/tmp', '/var/tmp', '/dev/shm'):\n    open(os.path.join(d, {name!r}), 'w').write('x')\n"
               "if os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n")
    result = run_tests(program, ["assert True"], mode="unsafe_user", allow_unsafe=True)
    assert result.passed, result.error
    for d in ("/tmp", "/var/tmp", "/dev/shm"):
        assert not (Path(d) / name).exists()
    assert not _sandbox_processes()
    big = run_tests("open('big', 'wb').write(b'0' * (64 * 2**20))\n", [], mode="unsafe_user", allow_unsafe=True)
    assert not big.passed and "File too large" in big.error  # RLIMIT_FSIZE
    # SysV IPC: the audit hook keeps Python's ctypes from the program, but C code need not ask; make one as a uid
    uid, key = sandbox.USER_UID_BASE + 1, 0x5B000000 + os.getpid() % 0xFFFFFF
    make = f"import ctypes\nassert ctypes.CDLL(None).shmget({key}, 4096, 0o1600) >= 0"
    python = sandbox.sandbox_plan("unsafe_user", True).python
    subprocess.run([python, "-I", "-S", "-c", make], user=uid, group=uid, check=True)
    assert key in _shm_keys()
    sandbox._remove_user_traces(uid)
    assert key not in _shm_keys()


def _shm_keys() -> list[int]:
    return [int(line.split()[0]) for line in Path("/proc/sysvipc/shm").read_text().splitlines()[1:]]


CHEATS = {
    "exec replaced": "import builtins\nbuiltins.exec = lambda *a, **k: None\n",
    "compile swapped": "import builtins\n_c = builtins.compile\n"
                       "builtins.compile = lambda *a, **k: _c('pass', '<x>', 'exec')\n",
    "assert rewritten": "import builtins\nbuiltins.AssertionError = type('Nope', (Exception,), {})\n",
    "always equal": "class _E:\n    __eq__ = lambda self, other: True\n    __bool__ = lambda self: True\n"
                    "def add_one(x):\n    return _E()\n",
    "tests from frames and memory": (
        "import gc, sys, re\nfound = []\nframe = sys._getframe()\nwhile frame:\n"
        "    found += [v for v in frame.f_locals.values() if isinstance(v, (str, list, dict))]\n"
        "    frame = frame.f_back\nfound += [o for o in gc.get_objects() if isinstance(o, (list, dict))]\n"
        "table = {}\nfor text in re.findall(r'assert add_one\\((-?\\d+)\\) == (-?\\d+)', repr(found)):\n"
        "    table[int(text[0])] = int(text[1])\n"
        "def add_one(x):\n    return table.get(x, x)\n"),
    "forged report on every descriptor": (
        "import os\nfor fd in range(3, 256):\n"
        "    for line in (b'{\"passed\": true, \"error\": \"\", \"ended\": false}', b'0123456789abcdef 1 \\n'):\n"
        "        try:\n            os.write(fd, line)\n        except OSError:\n            pass\nos._exit(0)\n"),
    "kill everything": "import os, signal\nos.kill(-1, signal.SIGKILL)\n",
    "runner rewritten to send __builtins__": (
        "import sys, builtins\nrunner = sys.modules['__main__']\n_names = runner._names\n"
        "fake = dict(vars(builtins), abs=lambda x: 0)\n"
        "runner._names = lambda ns, handle: {**_names(ns, handle), '__builtins__': ['h', handle(fake)],"
        " 'math': ['m', 'antigravity']}\n"),
    "builtins and modules shadowed": "import math\nmath = type('M', (), {'isclose': lambda *a, **k: True})\n"
                                     "def abs(x):\n    return 0\n",
}
SHADOW_TESTS = ["assert abs(add_one(1)) == abs(-2)", "assert math.isclose(add_one(-1), 0.0)"]


@pytest.mark.parametrize("cheat", sorted(CHEATS))
def test_verdict_cannot_be_forged(layer: str, cheat: str) -> None:
    """Attack: each of these turned a wrong program into a pass when the tests ran in the program's interpreter."""
    tests = SHADOW_TESTS if cheat in ("builtins and modules shadowed", "runner rewritten to send __builtins__") \
        else ADD_ONE_TESTS
    result = run_tests(WRONG_ADD_ONE + CHEATS[cheat], tests, mode=layer, allow_unsafe=True)
    assert not result.passed, (cheat, result)
    if cheat == "exec replaced":  # the cheat itself does not break an honest program
        assert run_tests(ADD_ONE + CHEATS[cheat], ADD_ONE_TESTS, mode=layer, allow_unsafe=True).passed
    if cheat == "builtins and modules shadowed":  # the shadows are not seen, so the real abs and math decide
        assert run_tests("import math\n" + ADD_ONE, SHADOW_TESTS, mode=layer, allow_unsafe=True).passed
        task_126 = "def sum(a, b):\n    return sum_([i for i in range(1, min(a, b)) if a % i == 0 and b % i == 0])\n"
        assert run_tests(f"sum_ = sum\n{task_126}", ["assert sum(10, 15) == 6", "assert sum(4, 6) == 3"]).passed


def test_reference_data_and_the_trainers_files_are_out_of_reach(layer: str, tmp_path: Path) -> None:
    """Attack: a program read the dataset's reference solutions; the fallback read the trainer's secrets."""
    data = tmp_path / "data"
    data.mkdir()
    reference = data / "mbpp.jsonl"
    reference.write_text(json.dumps({"code": ADD_ONE, "test_list": ADD_ONE_TESTS}) + "\n")
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2")
    secret.chmod(0o600)
    if layer == "namespaces":  # hidden even when world-readable
        for path in (tmp_path, data, reference):
            path.chmod(0o755 if path.is_dir() else 0o644)
    private = [str(secret), f"/proc/{os.getpid()}/mem", f"/proc/{os.getpid()}/environ", "/root", "signal"]
    public = [str(Path.cwd()), "/home", "/work/shared/data"]  # world-readable: hidden in namespaces mode only
    cheat = (f"import os\ntry:\n    exec(eval(open({str(reference)!r}).readline())['code'])\nexcept OSError:\n"
             f"    pass\nopened = []\nfor path in {[*private[:-1], *public]!r}:\n"
             "    try:\n        os.close(os.open(path, os.O_RDONLY))\n        opened.append(path)\n"
             "    except OSError:\n        pass\n"
             f"try:\n    os.kill({os.getpid()}, 0)\n    opened.append('signal')\nexcept OSError:\n    pass\n")
    result = run_tests(WRONG_ADD_ONE + cheat, ADD_ONE_TESTS, mode=layer, allow_unsafe=True)
    assert not result.passed and result.error.startswith("test 1 failed"), result
    allowed = [] if layer == "namespaces" else public
    probe = run_tests(cheat, ["print(opened)", f"assert set(opened) <= set({allowed!r}), opened"], mode=layer,
                      allow_unsafe=True)
    assert probe.passed, (probe.error, probe.output)
    assert os.getpid() > 1 and Path(f"/proc/{os.getpid()}").exists()  # and the trainer lives
    if layer == "namespaces":
        listing = run_tests("import os\nroot = sorted(os.listdir('/'))\n", ["print(root)", "assert 'work' not in root"
                            " and 'home' not in root and 'root' not in root and 'data' not in root, root"])
        assert listing.passed, listing


def test_without_namespaces_pass_at_one_refuses_unless_opted_in() -> None:
    """Attack: the audit-hook fallback let a program read the trainer's secrets, write its memory and kill it."""
    for root in (False, True):  # auto never falls back: no other mode isolates the program
        with pytest.raises(UserError, match=r"code_sandbox unsafe_user \(as root\) or unsafe, with "
                                            r"model\.task_options\.allow_unsafe_sandbox true"):
            sandbox.choose_fallback("auto", root=root, python="/usr/bin/python3")
    with pytest.raises(UserError, match="needs the trainer to run as root"):
        sandbox.choose_fallback("unsafe_user", root=False, python="/usr/bin/python3")
    with pytest.raises(UserError, match="user namespaces are unavailable"):
        sandbox.choose_fallback("namespaces", root=True, python="/usr/bin/python3")
    assert sandbox.choose_fallback("unsafe_user", root=True, python="/usr/bin/python3").mode == "unsafe_user"
    assert sandbox.choose_fallback("unsafe", root=False, python=None).mode == "unsafe"
    with pytest.raises(UserError, match="unknown code sandbox mode 'docker'"):
        PassAtOne(mode="docker")
    with pytest.raises(UserError, match=r"mode 'user' .* is now 'unsafe_user' and needs .*allow_unsafe_sandbox true"):
        PassAtOne(mode="user")  # the earlier name: no silent switch to an unsafe mode
    with pytest.raises(UserError, match="allow_unsafe_sandbox must be true or false, got 'false'"):
        PassAtOne(mode="unsafe", allow_unsafe="false")  # type: ignore[arg-type]
    for mode in sandbox.UNSAFE_MODES:  # naming an unsafe mode is not enough: the refusal names the opt-in
        with pytest.raises(UserError, match=rf"^code sandbox mode {mode} does not isolate generated code .*; set "
                                            r"model\.task_options\.allow_unsafe_sandbox true to run it anyway"):
            run_all([ADD_ONE], [ADD_ONE_TESTS], mode=mode)
    unsafe = run_all([ADD_ONE, WRONG_ADD_ONE], [ADD_ONE_TESTS] * 2, mode="unsafe", allow_unsafe=True)
    assert [r.passed for r in unsafe] == [True, False]


def test_files_land_in_a_throwaway_directory(layer: str) -> None:
    program = ("import os\nopen('stray.txt', 'w').write('x')\nprint(os.getcwd())\n"
               "def read():\n    return open('stray.txt').read()\n")
    result = run_tests(program, ["assert read() == 'x'"], mode=layer, allow_unsafe=True)  # through the program
    assert result.passed, result.error
    workdir = result.output.strip()
    assert workdir != os.getcwd() and not (Path.cwd() / "stray.txt").exists()
    assert workdir == "/sandbox" if layer == "namespaces" else not Path(workdir).exists()
    big = run_tests("open('big', 'wb').write(b'0' * (64 * 2**20))\n", [], mode=layer, allow_unsafe=True)
    assert not big.passed  # over RLIMIT_FSIZE


def test_environment_and_descriptors_are_not_inherited(layer: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIT_FT_SECRET_TOKEN", "hunter2")
    leaked = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(leaked, True)
    try:
        program = "import os\nenv = dict(os.environ)\nfds = sorted(int(f) for f in os.listdir('/proc/self/fd'))\n"
        result = run_tests(program, ["assert 'LIT_FT_SECRET_TOKEN' not in env, env", "assert len(fds) <= 6, fds",
                                     "assert sorted(env) == ['HOME', 'LANG', 'PATH', 'TMPDIR'], env"], mode=layer,
                           allow_unsafe=True)
    finally:
        os.close(leaked)
    assert result.passed, result.error


def test_a_trainer_with_many_open_descriptors_still_gets_verdicts(auto: None) -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if min(hard, 4096) < 1200:
        pytest.skip(f"RLIMIT_NOFILE hard limit {hard} is too low to open 1,100 descriptors")
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 4096), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]  # the sandbox's pipes land above 1024
    try:
        assert [r.passed for r in run_all([ADD_ONE, WRONG_ADD_ONE], [ADD_ONE_TESTS] * 2)] == [True, False]
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_output_is_captured_with_a_cap(auto: None) -> None:
    assert run_tests("print('hello from the sandbox')\n", []).output == "hello from the sandbox\n"
    loud = run_tests("print('x' * 10**6)\n", [])
    assert loud.passed and len(loud.output) == sandbox.OUTPUT_CAP


def test_pass_at_one_equals_a_hand_count(auto: None) -> None:
    programs = [ADD_ONE, WRONG_ADD_ONE, SIMILAR, "while True:\n    pass\n", ADD_ONE]
    tests = [ADD_ONE_TESTS, ADD_ONE_TESTS, SIMILAR_TESTS, ADD_ONE_TESTS, ["assert add_one(1) == 3"]]
    first, second = PassAtOne(timeout=1.0), PassAtOne(timeout=1.0)
    first.update(programs[:3], tests[:3])
    second.update([extract_code(f"```python\n{p}```") for p in programs[3:]], tests[3:])
    hand = [True, False, True, False, False]
    assert [r.passed for r in first.last_results + second.last_results] == hand
    assert second.last_results[0].timed_out
    assert (first.passed.item(), first.total.item()) == (2, 3)
    # the states are sums, so merging (what DDP's sync does) gives the pass rate over all processes' programs
    assert first._reductions["passed"] is dim_zero_sum and first._reductions["total"] is dim_zero_sum
    first.merge_state(second)
    assert (first.passed.item(), first.total.item()) == (sum(hand), len(hand))
    assert first.compute() == torch.tensor(sum(hand) / len(hand))
    first.reset()
    with pytest.warns(UserWarning, match="before the ``update``"):
        assert first.compute().item() == 0.0


def test_run_all_checks_lengths_and_keeps_order(auto: None) -> None:
    with pytest.raises(ValueError, match="got 2 programs, 1 test lists"):
        run_all([ADD_ONE, ADD_ONE], [ADD_ONE_TESTS])
    results = run_all([f"v = {i}" for i in range(4)], [[f"assert v == {i}"] for i in range(4)])
    assert [r.passed for r in results] == [True] * 4


@pytest.mark.slow
def test_all_mbpp_test_split_references_pass(auto: None) -> None:
    with open(shared_data("mbpp") / "mbpp.jsonl") as f:
        rows = [row for row in map(json.loads, f) if 11 <= row["task_id"] <= 510]  # the upstream test split
    assert len(rows) == 500
    metric = PassAtOne()
    metric.update([r["code"] for r in rows], [r["test_list"] for r in rows], [r["test_setup_code"] for r in rows])
    failures = [(r["task_id"], res.error) for r, res in zip(rows, metric.last_results, strict=True) if not res.passed]
    assert metric.compute().item() == 1.0, failures[:5]


def test_sft_task_passes_its_code_sandbox_option_to_pass_at_one() -> None:
    from lit_ft.tasks.sft.task import SFTTask

    for mode in ("namespaces", "unsafe_user", "unsafe"):
        if _available(mode):
            continue
        task = SFTTask({}, metrics=["pass@1"], code_sandbox=mode, code_timeout=3.0, allow_unsafe_sandbox=True)
        metric = task.metrics()["pass@1"]
        assert isinstance(metric, PassAtOne) and metric.plan.mode == mode and metric.timeout == 3.0
    with pytest.raises(UserError, match=r"allow_unsafe_sandbox true"):
        SFTTask({}, metrics=["pass@1"], code_sandbox="unsafe_user").metrics()
    with pytest.raises(UserError, match="unknown code sandbox mode 'vm'"):
        SFTTask({}, metrics=["pass@1"], code_sandbox="vm").metrics()  # type: ignore[arg-type]
