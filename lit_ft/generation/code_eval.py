"""Functional correctness of generated code: pass@1 over assert-style tests, run in `lit_ft.generation.sandbox`.

`PassAtOne` is a torchmetrics `Metric` (sum-reduced `passed` / `total` states, so it is correct under DDP);
`run_all` runs a batch of programs on a small thread pool (each program is its own sandboxed process, so the
threads only wait). `lit_ft.generation.decoding.extract_code` pulls the program out of a model's generation.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from torchmetrics import Metric

from lit_ft.errors import UserError
from lit_ft.generation.sandbox import DISK_MB, SandboxResult, run_tests, sandbox_plan


def run_all(
    programs: Sequence[str], tests: Sequence[Sequence[str]], setups: Sequence[str] | None = None,
    timeout: float = 10.0, memory_mb: int = 512, workers: int = 2, mode: str = "auto", disk_mb: int = DISK_MB,
    allow_unsafe: bool = False,
) -> list[SandboxResult]:
    """Run each program against its tests in its own sandbox, `workers` at a time; results in input order.

    Never raises for anything a program does (its failure is its result); raises UserError for bad arguments or a
    `mode` this machine cannot run (or an unsafe one without `allow_unsafe`).
    """
    setups = list(setups) if setups is not None else [""] * len(programs)
    if not len(programs) == len(tests) == len(setups):
        raise UserError(
            f"got {len(programs)} programs, {len(tests)} test lists and {len(setups)} setups: "
            "pass one test list (and one setup, if any) per program"
        )
    sandbox_plan(mode, allow_unsafe)  # the configuration error, if any, before the first program
    if not programs:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(programs)))) as pool:
        return list(pool.map(lambda job: run_tests(job[0], list(job[1]), timeout, job[2], memory_mb, mode, disk_mb,
                                                   allow_unsafe), zip(programs, tests, setups, strict=True)))


class PassAtOne(Metric):
    """Share of programs (one sample per problem) that pass all their tests.

    Args:
        timeout: Wall-clock seconds each program may run.
        memory_mb: Address-space limit of each process of a run (the program's and the judge's).
        workers: Programs run at the same time (each in its own process).
        mode: The sandbox mode (`auto` = `namespaces`, `unsafe_user`, `unsafe`; see docs/sandbox.md). Checked here,
            so a machine that cannot isolate programs fails before training, not at the first validation.
        disk_mb: Size cap of each program's writable space (`namespaces` mode).
        allow_unsafe: Let an unsafe `mode` run (refused otherwise).
        **kwargs: Passed to `torchmetrics.Metric` (for example `sync_on_compute`).
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    passed: torch.Tensor
    total: torch.Tensor

    def __init__(
        self, timeout: float = 10.0, memory_mb: int = 512, workers: int = 2, mode: str = "auto",
        disk_mb: int = DISK_MB, allow_unsafe: bool = False, **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.plan = sandbox_plan(mode, allow_unsafe)
        self.allow_unsafe = allow_unsafe
        self.timeout, self.memory_mb, self.workers, self.mode, self.disk_mb = timeout, memory_mb, workers, mode, disk_mb
        self.add_state("passed", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0, dtype=torch.long), dist_reduce_fx="sum")
        self.last_results: list[SandboxResult] = []

    def update(self, programs: list[str], tests: list[list[str]], setups: list[str] | None = None) -> None:
        """Run `programs[i]` against `tests[i]` (after `setups[i]`, MBPP's `test_setup_code`, if given)."""
        self.last_results = run_all(programs, tests, setups, self.timeout, self.memory_mb, self.workers, self.mode,
                                    self.disk_mb, self.allow_unsafe)
        self.passed += sum(result.passed for result in self.last_results)
        self.total += len(self.last_results)

    def compute(self) -> torch.Tensor:
        if self.total == 0:
            return torch.tensor(0.0)
        return self.passed.float() / self.total
