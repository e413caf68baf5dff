"""Test aid, loaded only when a test puts this folder on PYTHONPATH: hold one write open half-way, so the test
can SIGKILL the process in the middle of it.

LIT_FT_STALL=`checkpoint:N:MARKER` stops the N-th checkpoint write after half of its bytes;
`export:N:MARKER` stops the N-th export after the model weights are written (before the tokenizer).
The process touches MARKER, then sleeps until it is killed.
`step:N:MARKER` holds training step N (1-based) after its forward pass: the process touches MARKER and waits
until a signal stops the run (Lightning's SIGTERM flag, which lit_ft also raises on Ctrl-C), then finishes the step.
"""

from __future__ import annotations

import io
import os
import time
from pathlib import Path
from typing import Any

_SPEC = os.environ.get("LIT_FT_STALL", "")


def _stall(marker: str) -> None:
    Path(marker).touch()
    time.sleep(3600)


def _install(what: str, nth: int, marker: str) -> None:
    calls = {"n": 0}
    if what == "checkpoint":
        import torch
        from lightning.fabric.plugins.io import torch_io

        original = torch_io._atomic_save

        def half_save(checkpoint: dict[str, Any], filepath: Any) -> None:
            calls["n"] += 1
            if calls["n"] != nth:
                original(checkpoint, filepath)
                return
            buffer = io.BytesIO()
            torch.save(checkpoint, buffer)
            data = buffer.getvalue()
            with open(filepath, "wb") as f:
                f.write(data[: len(data) // 2])
                f.flush()
                os.fsync(f.fileno())
            _stall(marker)

        torch_io._atomic_save = half_save
    elif what == "step":
        from lit_ft.module import FineTuner

        training_step = FineTuner.training_step

        def held(self: Any, *args: Any, **kwargs: Any) -> Any:
            loss = training_step(self, *args, **kwargs)
            if self.trainer.global_step == nth - 1 and not calls["n"]:
                calls["n"] += 1
                Path(marker).touch()
                deadline = time.monotonic() + 300
                while not self.trainer.received_sigterm and time.monotonic() < deadline:
                    time.sleep(0.02)
            return loss

        FineTuner.training_step = held  # type: ignore[method-assign]
    elif what == "export":
        from lit_ft.training import export

        load_tokenizer = export.load_tokenizer

        def stalled(name: str) -> Any:
            calls["n"] += 1
            if calls["n"] == nth:
                _stall(marker)
            return load_tokenizer(name)

        export.load_tokenizer = stalled  # type: ignore[assignment]


if _SPEC:
    _what, _nth, _marker = _SPEC.split(":", 2)
    _install(_what, int(_nth), _marker)
