"""The code sandbox (lit_ft.sandbox) and pass@1 (lit_ft.code_eval): real processes, real limits, real MBPP rows."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch
from builders import shared_data
from torchmetrics.utilities.data import dim_zero_sum

from lit_ft import sandbox
from lit_ft.code_eval import PassAtOne, extract_code, run_all
from lit_ft.sandbox import SandboxResult, run_tests

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the sandbox needs a POSIX system")

ADD_ONE = "def add_one(x):\n    return x + 1\n"
ADD_ONE_TESTS = ["assert add_one(1) == 2", "assert add_one(-1) == 0"]
# inline MBPP-style rows (task 2's problem): always run, with or without ../shared/data
SIMILAR = "def similar_elements(a, b):\n    return tuple(sorted(set(a) & set(b)))\n"
SIMILAR_TESTS = ["assert similar_elements((3, 4, 5, 6), (5, 7, 4, 10)) == (4, 5)",
                 "assert similar_elements((1, 2, 3, 4), (5, 4, 3, 7)) == (3, 4)"]


@pytest.fixture(params=["probed", "audit-hook"])
def layer(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with this machine's probed plan, then again with the weaker fallback forced."""
    if request.param == "audit-hook":
        plan = sandbox.sandbox_plan()
        blocked = sandbox.NETWORK_EVENTS + (sandbox.FORK_EVENTS if os.geteuid() == 0 and plan.user is None else ())
        blocked = tuple(dict.fromkeys(blocked))
        forced = dataclasses.replace(plan, prefix=(), network="audit-hook", blocked_events=blocked)
        monkeypatch.setattr(sandbox, "sandbox_plan", lambda: forced)
    return sandbox.sandbox_plan().network


def test_correct_program_passes_and_wrong_one_fails() -> None:
    assert run_tests(ADD_ONE, ADD_ONE_TESTS) == SandboxResult(True, "", False, "")
    wrong = run_tests("def add_one(x):\n    return x\n", ADD_ONE_TESTS)
    assert not wrong.passed and not wrong.timed_out
    assert wrong.error == "test 1 failed: assert add_one(1) == 2: AssertionError"
    assert "AssertionError" in wrong.output  # the traceback, captured
    missing = run_tests("def other(x):\n    return x\n", ADD_ONE_TESTS)
    assert missing.error == "test 1 failed: assert add_one(1) == 2: NameError: name 'add_one' is not defined"
    assert run_tests("def add_one(x:\n", ADD_ONE_TESTS).error.startswith("program raised: SyntaxError")


def test_setup_runs_after_the_program_and_demo_blocks_are_skipped() -> None:
    program = "class Node:\n    def __init__(self, v):\n        self.v = v\nif __name__ == '__main__':\n    input()\n"
    result = run_tests(program, ["assert root.v == 1"], setup="root = Node(1)")
    assert result.passed, result.error


def test_early_exit_is_not_a_pass() -> None:
    for program in ["import sys\nsys.exit(0)", "import os\nos._exit(0)", "quit()"]:
        result = run_tests(program, ["assert False"])
        assert not result.passed, program
    assert run_tests("import os\nos._exit(0)", ["assert False"]).error.startswith("exited with status 0")


def test_mbpp_reference_solutions_pass_and_broken_ones_fail() -> None:
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


def test_infinite_loop_times_out() -> None:
    start = time.monotonic()
    result = run_tests("while True:\n    pass\n", ["assert True"], timeout=1.0)
    assert result.timed_out and not result.passed
    assert "timed out after 1 s" in result.error
    assert time.monotonic() - start < 5


def test_fork_bomb_fails_quickly_and_leaves_nothing_behind(layer: str) -> None:
    start = time.monotonic()
    result = run_tests("import os\nwhile True:\n    os.fork()\n", ["assert True"], timeout=5.0)
    assert not result.passed
    assert time.monotonic() - start < 4, result  # the process limit (or the fork guard) stops it, not the timeout
    stubborn = "import os, sys\nprint(os.getcwd(), flush=True)\nwhile True:\n    try:\n        os.fork()\n" \
               "    except Exception:\n        pass\n"
    result = run_tests(stubborn, ["assert True"], timeout=1.5)
    assert result.timed_out and not result.passed
    workdir = result.output.split()[0]
    assert workdir.startswith("/") and not Path(workdir).exists()
    time.sleep(0.2)
    assert not _processes_in(workdir)
    assert run_tests(ADD_ONE, ADD_ONE_TESTS).passed  # and the machine still runs sandboxes


def _processes_in(workdir: str) -> list[str]:
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if os.readlink(entry / "cwd").startswith(workdir):
                found.append(entry.name)
        except OSError:
            continue
    return found


def test_huge_allocation_fails_with_memory_error() -> None:
    result = run_tests("x = bytearray(10**11)\n", ["assert True"])
    assert not result.passed and not result.timed_out
    assert result.error == "program raised: MemoryError"
    assert run_tests("x = bytearray(10**8)\n", ["assert len(x) == 10**8"], memory_mb=512).passed


def test_network_is_unreachable(layer: str) -> None:
    outside = run_tests("import socket\nsocket.create_connection(('1.1.1.1', 80), timeout=2)\n", ["assert True"])
    assert not outside.passed and not outside.timed_out
    assert ("Network is unreachable" if layer == "netns" else "'socket.__new__' is not allowed") in outside.error
    with socket.socket() as server:  # a service on the host's loopback (a database, the trainer's own ports)
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        host_loopback = run_tests(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\n", [])
    assert not host_loopback.passed, host_loopback
    own_server = "import socket\ns = socket.socket()\ns.bind(('127.0.0.1', 0))\ns.listen()\n" \
                 "socket.create_connection(s.getsockname(), timeout=2)\n"
    assert not run_tests(own_server, []).passed


def test_fallback_hook_also_refuses_other_programs(layer: str) -> None:
    result = run_tests("import subprocess\nsubprocess.run(['true'])\n", [])
    assert result.passed == (layer == "netns"), result  # under the hook, curl & co would bypass it: refused
    if layer == "audit-hook":
        assert "'subprocess.Popen' is not allowed" in result.error


def test_files_land_in_a_throwaway_directory(tmp_path: Path) -> None:
    program = "import os\nopen('stray.txt', 'w').write('x')\nprint(os.getcwd())\n"
    result = run_tests(program, ["assert open('stray.txt').read() == 'x'"])
    assert result.passed, result.error
    workdir = result.output.strip()
    assert workdir != os.getcwd() and not Path(workdir).exists()
    assert not (Path.cwd() / "stray.txt").exists()
    if sandbox.sandbox_plan().user is not None:  # root drops to nobody: the trainer's files are out of reach
        denied = run_tests(f"open({str(tmp_path / 'x.txt')!r}, 'w')\n", [])
        assert "PermissionError" in denied.error and not (tmp_path / "x.txt").exists()
    big = run_tests("open('big', 'wb').write(b'0' * (64 * 2**20))\n", [])
    assert not big.passed  # over RLIMIT_FSIZE


def test_environment_and_descriptors_are_not_inherited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LIT_FT_SECRET_TOKEN", "hunter2")
    leaked = os.open(os.devnull, os.O_RDONLY)
    os.set_inheritable(leaked, True)
    try:
        program = "import os\nenv = dict(os.environ)\nfds = os.listdir('/proc/self/fd')\n"
        result = run_tests(program, ["assert 'LIT_FT_SECRET_TOKEN' not in env, env", "assert len(fds) <= 5, fds",
                                     "assert sorted(env) == ['HOME', 'LANG', 'PATH', 'TMPDIR'], env"])
    finally:
        os.close(leaked)
    assert result.passed, result.error


def test_output_is_captured_with_a_cap() -> None:
    assert run_tests("print('hello from the sandbox')\n", []).output == "hello from the sandbox\n"
    loud = run_tests("print('x' * 10**6)\n", [])
    assert loud.passed and len(loud.output) == sandbox.OUTPUT_CAP


def test_extract_code() -> None:
    text = "Here you go:\n```text\nnot code\n```\n```python\ndef f():\n    return 1\n```\nand\n```python\nx = 2\n```"
    assert extract_code(text) == "def f():\n    return 1\n"
    assert extract_code("```\nprint(1)\n```") == "print(1)\n"
    assert extract_code("```py\nprint(2)") == "print(2)"  # cut at the token limit
    assert extract_code("def g():\n    return 3") == "def g():\n    return 3"


def test_pass_at_one_equals_a_hand_count() -> None:
    programs = [ADD_ONE, "def add_one(x):\n    return x\n", SIMILAR, "while True:\n    pass\n", ADD_ONE]
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


def test_run_all_checks_lengths_and_keeps_order() -> None:
    with pytest.raises(ValueError, match="got 2 programs, 1 test lists"):
        run_all([ADD_ONE, ADD_ONE], [ADD_ONE_TESTS])
    results = run_all([f"v = {i}" for i in range(4)], [[f"assert v == {i}"] for i in range(4)])
    assert [r.passed for r in results] == [True] * 4


@pytest.mark.slow
def test_all_mbpp_test_split_references_pass() -> None:
    with open(shared_data("mbpp") / "mbpp.jsonl") as f:
        rows = [row for row in map(json.loads, f) if 11 <= row["task_id"] <= 510]  # the upstream test split
    assert len(rows) == 500
    metric = PassAtOne()
    metric.update([r["code"] for r in rows], [r["test_list"] for r in rows], [r["test_setup_code"] for r in rows])
    failures = [(r["task_id"], res.error) for r, res in zip(rows, metric.last_results, strict=True) if not res.passed]
    assert metric.compute().item() == 1.0, failures[:5]
