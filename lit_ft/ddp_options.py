"""DistributedDataParallel settings a task declares for itself (`Task.ddp_kwargs`), given to Lightning's DDP strategy.

A task knows what its model needs under DDP (`find_unused_parameters` for parameters some steps leave without a
gradient); the run's strategy may come from a name (`ddp`, or `auto` on several devices), a class path, or a
strategy piece of configs/strategy/, so the declaration is applied to the strategy the trainer built, whatever
built it, before it wraps the model (at the start of `fit`).
"""

from __future__ import annotations

import inspect
from typing import Any

from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, Strategy
from torch.nn.parallel import DistributedDataParallel

from lit_ft.adapters.lightning import ddp_kwargs
from lit_ft.errors import UserError
from lit_ft.registry import get_task


def task_ddp_kwargs(task: str) -> dict[str, Any]:
    """The DistributedDataParallel arguments task `task` declares, checked against its signature."""
    declared = dict(get_task(task).ddp_kwargs)
    known = set(inspect.signature(DistributedDataParallel.__init__).parameters) - {"self", "module"}
    unknown = sorted(set(declared) - known)
    if unknown:
        raise UserError(f"task '{task}' declares ddp_kwargs {', '.join(unknown)}, which "
                        "torch.nn.parallel.DistributedDataParallel does not take; fix the plugin's ddp_kwargs (keys "
                        "are DistributedDataParallel argument names, such as find_unused_parameters)")
    return declared


def apply_ddp_kwargs(strategy: Strategy, task: str) -> dict[str, Any]:
    """Give a DDP strategy the task's DistributedDataParallel arguments it does not set itself; returns them.

    Other strategies (one device, FSDP, DeepSpeed's engine) wrap the model without DistributedDataParallel; the
    declaration is checked on every run all the same, so a misspelt key fails before the run that needs it."""
    declared = task_ddp_kwargs(task)
    if not isinstance(strategy, DDPStrategy) or isinstance(strategy, DeepSpeedStrategy):  # a DDPStrategy subclass
        return {}
    # DDPStrategy passes its constructor's **kwargs to DistributedDataParallel when fit starts and has no public
    # setter (Lightning 2.6); the strategy is built by then, often from a name. A value the user gave is kept.
    given = ddp_kwargs(strategy)
    added = {k: v for k, v in declared.items() if k not in given}
    given.update(added)
    return added
