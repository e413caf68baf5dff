"""What a fit config will do, worked out before it runs: the device, the devices, batches and steps per epoch,
when validation first runs, and the backbone's own config file. Read by the pre-flight rules
(`lit_ft.commands.rules.machine`).

Numbers follow Lightning's loops: a training batch holds `data.batch_size` rows on each device, an optimizer step
takes `accumulate_grad_batches` batches, `val_check_interval` counts batches (an int) or a share of the epoch.
"""

from __future__ import annotations

import functools
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lit_ft.backbone import resolve_backbone

CPUINFO = Path("/proc/cpuinfo")
DEFAULT_MAX_EPOCHS = 1000  # Lightning's, when neither max_epochs nor max_steps is set


def cpu_flags(path: Path = CPUINFO) -> frozenset[str] | None:
    """The CPU's feature flags (x86 `flags`, ARM `Features`); None where the system does not list them."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    return frozenset(w for line in text.splitlines() if line.split(":")[0].strip() in ("flags", "Features")
                     for w in line.split(":", 1)[1].split())


@dataclass
class RunPlan:
    """A parsed fit config (`cfg`), its data module when built (nothing loaded yet), and facts of this machine."""

    cfg: Any
    data: Any = None
    cuda_devices: int | None = None  # None: ask torch
    flags: frozenset[str] | None = None  # None: read /proc/cpuinfo
    memory: int | None = None  # bytes one device holds; None: ask the machine

    @functools.cached_property
    def device_memory(self) -> int | None:
        """Bytes one training process may use: a CUDA device's memory, or this machine's RAM shared by the
        processes (None where unknown)."""
        if self.memory is not None:
            return self.memory
        if self.accelerator == "cuda" and self.cuda_count:
            import torch

            return int(torch.cuda.get_device_properties(0).total_memory)
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // self.devices
        except (ValueError, OSError, AttributeError):
            return None

    @property
    def trainer(self) -> Any:
        return self.cfg.trainer

    @functools.cached_property
    def cuda_count(self) -> int:
        if self.cuda_devices is not None:
            return self.cuda_devices
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0

    @functools.cached_property
    def cpu_flags(self) -> frozenset[str] | None:
        return self.flags if self.flags is not None else cpu_flags()

    @property
    def accelerator(self) -> str:
        """`cpu`, `cuda`, `mps`, ... as the config names it; `auto` resolves to cuda when a GPU is visible."""
        name = str(self.trainer.accelerator or "auto").lower()
        name = "cuda" if name == "gpu" else name
        return ("cuda" if self.cuda_count else "cpu") if name == "auto" else name

    @property
    def devices(self) -> int:
        """Processes training in step (devices x nodes)."""
        given, available = self.trainer.devices, self.cuda_count if self.accelerator == "cuda" else 1
        if isinstance(given, list):
            count = len(given)
        elif str(given).lstrip("-").isdigit():
            count = int(given) if int(given) > 0 else available
        elif isinstance(given, str) and "," in given:
            count = len([d for d in given.split(",") if d.strip()])
        else:
            count = available
        return max(count, 1) * (self.trainer.num_nodes or 1)

    @functools.cached_property
    def train_rows(self) -> int | None:
        train = self.data.raw("train") if self.data is not None else None
        return None if train is None else len(train)

    @property
    def accumulate(self) -> int:
        return int(self.trainer.accumulate_grad_batches or 1)

    @property
    def batches_per_epoch(self) -> int | None:
        if not self.train_rows:
            return None
        batches = self.data.epoch_batches(self.devices)  # packed rows, rows dropped in tokenizing: as the run
        if batches is None:
            return None
        limit = self.trainer.limit_train_batches
        if isinstance(limit, float) and limit != 1.0:
            return int(batches * limit)
        return min(batches, limit) if isinstance(limit, int) else batches

    @property
    def steps_per_epoch(self) -> int | None:
        batches = self.batches_per_epoch
        return None if batches is None else math.ceil(batches / self.accumulate)

    @property
    def total_batches(self) -> int | None:
        """Training batches of the whole run (max_epochs and max_steps, whichever ends it first)."""
        batches, epochs, steps = self.batches_per_epoch, self.trainer.max_epochs, self.trainer.max_steps
        if batches is None:
            return None
        if epochs is None:
            epochs = DEFAULT_MAX_EPOCHS if steps in (None, -1) else -1
        total = batches * epochs if epochs != -1 else math.inf
        total = total if steps in (None, -1) else min(total, steps * self.accumulate)
        return None if total == math.inf else int(total)

    @property
    def first_validation(self) -> int | None:
        """The training batch after which validation first runs (counted from the start of the run)."""
        batches = self.batches_per_epoch
        if batches is None or self.trainer.limit_val_batches == 0:
            return None
        interval, every = self.trainer.val_check_interval, self.trainer.check_val_every_n_epoch
        interval = 1.0 if interval is None else interval
        if isinstance(interval, float):
            return ((every or 1) - 1) * batches + max(1, int(batches * interval))
        return int(interval) if every is None else (every - 1) * batches + int(interval)

    @functools.cached_property
    def backbone_config(self) -> dict[str, Any] | None:
        """The backbone's `config.json` (a local directory, a packaged model or the hub cache); None if unseen."""
        name = str(self.cfg.model.backbone)
        where = Path(resolve_backbone(name))
        path: Any = where / "config.json" if where.is_dir() else None
        if path is None:
            from huggingface_hub import try_to_load_from_cache

            path = try_to_load_from_cache(name, "config.json")
        if not isinstance(path, (str, Path)) or not Path(path).is_file():
            return None
        loaded = json.loads(Path(path).read_text(encoding="utf-8"))
        return loaded if isinstance(loaded, dict) else None
