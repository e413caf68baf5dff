"""What lit_ft keeps off the terminal, in one place: library tips, warnings and reports that are noise here.

`install()` runs once per `lit_ft` command, before the trainer exists. Everything it silences is named below
with the reason; a user who wants a library's own output back can set the variable named next to it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from collections.abc import Iterator

# Python warnings that say nothing the user can act on in a lit_ft run
IGNORED_WARNINGS = (
    ".*does not have many workers.*",  # num_workers=0 is the tokenized, in-memory default
    ".*custom batch sampler.*for prediction.*",  # lit_ft's samplers shard on their own
    ".*isinstance\\(treespec, LeafSpec\\).*",
    ".*LightningCLI's args parameter is intended to run from within Python.*",  # `main()` passes argv itself
    ".*will save all targets and predictions in the buffer.*",  # torchmetrics' Pearson/Spearman, by design
    ".*is smaller than the logging interval.*",  # lit_ft.training.train_rates lowers the interval to an epoch's steps
    # epoch metrics come from torchmetrics, already synced across processes (`FineTuner._log_epoch`)
    ".*when logging on epoch level in distributed setting.*",
)
# Lightning's rank-zero info lines that are advertising or restate the obvious
LIGHTNING_NOISE = re.compile(
    r"💡 Tip|litlogger|litmodels|^(TPU|HPU) available: False|^`Trainer\.\w+` stopped: `max_(epochs|steps)=\d+` reached"
    r"|^Loading `train_dataloader` to estimate|^`weights_only` was not set"
    r"|^Trainer already configured with model summary"
    r"|Received SIGTERM: \d+$"  # lit_ft.training.interrupt prints one line: where the run stopped and how to resume it
)
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_restoring = 0


class _DropMatching(logging.Filter):
    def __init__(self, pattern: re.Pattern[str]) -> None:
        super().__init__()
        self.pattern = pattern

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


class _LoadReport(logging.Filter):
    """Transformers' multi-line LOAD REPORT: dropped when restoring a trained model (the checkpoint overwrites
    the "missing" weights right after), otherwise shortened to the one line that matters: which weights are new."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "LOAD REPORT" not in message:
            return True
        if _restoring:
            return False
        short = shorten_load_report(message)
        if short is not None:
            record.msg, record.args = short, ()
        return True


def shorten_load_report(report: str) -> str | None:
    """`new weights in <Model>, trained from scratch: a, b` from a transformers load report table."""
    text = _ANSI.sub("", report)
    model = text.split(" LOAD REPORT", 1)[0].strip().split()[-1]
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("|")]
        if len(cells) >= 2 and cells[1].isupper() and cells[0] and cells[0] != "Key":
            found.setdefault(cells[1], []).append(cells[0])
    if not found:
        return None
    parts = []
    if "MISSING" in found:
        parts.append(f"new weights in {model}, trained from scratch: {', '.join(found.pop('MISSING'))}")
    if "UNEXPECTED" in found:
        parts.append(f"{len(found.pop('UNEXPECTED'))} checkpoint weights unused")
    parts += [f"{status.lower()}: {', '.join(keys)}" for status, keys in found.items()]
    return "; ".join(parts)


@contextlib.contextmanager
def restoring() -> Iterator[None]:
    """Around building a model whose weights a checkpoint provides: no report of "missing" head weights."""
    global _restoring
    _restoring += 1
    try:
        yield
    finally:
        _restoring -= 1


def install() -> None:
    """Silence the noise; idempotent."""
    for pattern in IGNORED_WARNINGS:
        warnings.filterwarnings("ignore", pattern)
    # LightningCLI's own calls of jsonargparse APIs deprecated since jsonargparse 4.49 (`skip_none`,
    # `instantiate_classes`, `add_instantiator`): a Lightning release changes them; nothing a user can act on
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"lightning\.pytorch\.cli")
    # W&B's startup banner, `anonymous`/git-root warnings and the sparkline history at finish; lit_ft's own
    # end-of-run block says where the run is and how to sync it (WANDB_SILENT=false brings them back)
    os.environ.setdefault("WANDB_SILENT", "true")
    _add_filter(logging.getLogger("lightning.pytorch.utilities.rank_zero"), _DropMatching(LIGHTNING_NOISE))
    _add_filter(logging.getLogger("lightning.fabric.utilities.rank_zero"), _DropMatching(LIGHTNING_NOISE))
    _add_filter(logging.getLogger("lightning.pytorch.trainer.connectors.checkpoint_connector"),
                _DropMatching(LIGHTNING_NOISE))
    _add_filter(logging.getLogger("lightning.pytorch.trainer.connectors.signal_connector"),
                _DropMatching(LIGHTNING_NOISE))
    _add_filter(logging.getLogger("transformers.modeling_utils"), _LoadReport())
    # per-split "Generating / numbering / tokenizing" and "Loading weights" bars: the data summary replaces them
    import datasets
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.disable_progress_bar()


def _add_filter(logger: logging.Logger, new: logging.Filter) -> None:
    if not any(type(f) is type(new) for f in logger.filters):
        logger.addFilter(new)
